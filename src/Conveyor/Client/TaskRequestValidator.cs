namespace Conveyor;

/// <summary>A problem with one field of a request.</summary>
/// <param name="Field">The field, as named in the HTTP API (camelCase; <c>tasks[3].queue</c> in batches).</param>
/// <param name="Message">What is wrong.</param>
public readonly record struct FieldError(string Field, string Message);

/// <summary>Thrown by the client when a request is invalid; nothing was stored.</summary>
public sealed class TaskValidationException : ArgumentException
{
    /// <summary>Creates the exception from the field errors.</summary>
    public TaskValidationException(IReadOnlyList<FieldError> errors)
        : base(string.Join("; ", errors.Select(e => $"{e.Field}: {e.Message}")))
    {
        Errors = errors;
    }

    /// <summary>Creates the exception.</summary>
    public TaskValidationException() : this([]) { }

    /// <summary>Creates the exception with a message.</summary>
    public TaskValidationException(string message) : base(message) { Errors = []; }

    /// <summary>Creates the exception with a message and cause.</summary>
    public TaskValidationException(string message, Exception innerException) : base(message, innerException) { Errors = []; }

    /// <summary>Every problem found.</summary>
    public IReadOnlyList<FieldError> Errors { get; }
}

/// <summary>Checks task requests before anything is stored; used by the client and the HTTP API alike.</summary>
public static class TaskRequestValidator
{
    /// <summary>Longest task name, in characters.</summary>
    public const int MaxTaskNameLength = 200;
    /// <summary>Longest idempotency key, in characters.</summary>
    public const int MaxIdempotencyKeyLength = 200;
    /// <summary>Most attempts a task may have.</summary>
    public const int MaxAttemptsLimit = 1000;

    /// <summary>How the error of a task name the registry does not know begins; the name follows, then a quote.</summary>
    public const string UnknownTaskPrefix = "unknown task '";

    /// <summary>Adds the problems of <paramref name="request"/> to <paramref name="errors"/>, naming fields with <paramref name="prefix"/>.</summary>
    public static void Validate(TaskRequest request, TaskRegistry? registry, bool requireRegistered, string prefix, List<FieldError> errors)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(errors);
        var options = request.Options;
        if (string.IsNullOrWhiteSpace(request.Task))
        {
            errors.Add(new(prefix + "task", "is required"));
        }
        else if (request.Task.Length > MaxTaskNameLength)
        {
            errors.Add(new(prefix + "task", $"is longer than {MaxTaskNameLength} characters"));
        }
        else if (registry is not null && registry.TryGet(request.Task, out var descriptor))
        {
            var problem = descriptor.ValidateArgs(request.ArgsJson);
            if (problem is not null)
            {
                errors.Add(new(prefix + "args", problem));
            }
        }
        else if (requireRegistered)
        {
            errors.Add(new(prefix + "task", $"{UnknownTaskPrefix}{request.Task}'"));
        }
        if (options is null)
        {
            return;
        }
        if (options.Queue is not null && !QueueNames.IsValid(options.Queue))
        {
            errors.Add(new(prefix + "queue", $"'{options.Queue}' is not a valid queue name: 1 to {QueueNames.MaxLength} letters, digits, '.', '-' or '_'"));
        }
        if (options.Priority is { } priority && (priority < Priorities.Min || priority > Priorities.Max))
        {
            errors.Add(new(prefix + "priority", $"{priority} is out of range [{Priorities.Min}, {Priorities.Max}]"));
        }
        if (options.Delay is { } delay && delay < TimeSpan.Zero)
        {
            errors.Add(new(prefix + "delay", "must not be negative"));
        }
        if (options.Delay is not null && options.Eta is not null)
        {
            errors.Add(new(prefix + "eta", "give either delay or eta, not both"));
        }
        if (options.MaxAttempts is { } attempts && (attempts < 1 || attempts > MaxAttemptsLimit))
        {
            errors.Add(new(prefix + "maxAttempts", $"{attempts} is out of range [1, {MaxAttemptsLimit}]"));
        }
        if (options.Timeout is { } timeout && timeout <= TimeSpan.Zero)
        {
            errors.Add(new(prefix + "timeout", "must be positive"));
        }
        if (options.IdempotencyKey is { } key && (key.Length == 0 || key.Length > MaxIdempotencyKeyLength))
        {
            errors.Add(new(prefix + "idempotencyKey", $"must be 1 to {MaxIdempotencyKeyLength} characters"));
        }
        if (options.UniqueKey is { } unique && (unique.Length == 0 || unique.Length > MaxIdempotencyKeyLength))
        {
            errors.Add(new(prefix + "uniqueKey", $"must be 1 to {MaxIdempotencyKeyLength} characters"));
        }
        if (options.UniqueFor is { } window && window < TimeSpan.Zero)
        {
            errors.Add(new(prefix + "uniqueFor", "must not be negative"));
        }
        if (options.UniqueFor is not null && options.UniqueKey is null)
        {
            errors.Add(new(prefix + "uniqueFor", "needs a uniqueKey"));
        }
        if (options.Retry is { } retry)
        {
            errors.AddRange(retry.Validate(prefix + "retry."));
        }
        if (options.Headers is { } headers)
        {
            foreach (var name in headers.Keys.Where(Backends.RetryHeaders.IsReserved))
            {
                errors.Add(new($"{prefix}headers.{name}", "is reserved: Conveyor stores the retry policy's exception lists in it; set retry.retryOn or retry.neverRetryOn instead"));
            }
        }
    }
}
