using Conveyor.Backends;

namespace Conveyor;

/// <summary>The default <see cref="ITaskClient"/>: validates, applies task defaults and calls the backend.</summary>
internal sealed class TaskClient(IConveyorBackend backend, TaskRegistry registry, TimeProvider time, SchedulerSignal signal) : ITaskClient
{
    public async Task<EnqueueResult> EnqueueAsync(TaskRequest request, CancellationToken cancellationToken = default)
    {
        var results = await EnqueueManyAsync([request], cancellationToken).ConfigureAwait(false);
        return results[0];
    }

    public async Task<IReadOnlyList<EnqueueResult>> EnqueueManyAsync(IReadOnlyList<TaskRequest> requests, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(requests);
        if (requests.Count == 0)
        {
            return [];
        }
        var errors = new List<FieldError>();
        for (var i = 0; i < requests.Count; i++)
        {
            TaskRequestValidator.Validate(requests[i], null, requireRegistered: false, requests.Count == 1 ? "" : $"tasks[{i}].", errors);
        }
        if (errors.Count > 0)
        {
            throw new TaskValidationException(errors);
        }
        var now = time.GetUtcNow();
        var messages = new TaskMessage[requests.Count];
        var anyScheduled = false;
        for (var i = 0; i < requests.Count; i++)
        {
            messages[i] = BuildMessage(requests[i], registry, now);
            anyScheduled |= messages[i].NotBefore is not null;
        }
        var stored = await backend.Queue.EnqueueAsync(messages, cancellationToken).ConfigureAwait(false);
        var results = new EnqueueResult[stored.Count];
        for (var i = 0; i < stored.Count; i++)
        {
            results[i] = stored[i].Created ? stored[i] with { Message = messages[i] } : stored[i];
        }
        if (anyScheduled)
        {
            signal.Notify();
        }
        return results;
    }

    internal static TaskMessage BuildMessage(TaskRequest request, TaskRegistry registry, DateTimeOffset now)
    {
        var defaults = registry.TryGet(request.Task, out var descriptor) ? descriptor.Defaults : null;
        var options = request.Options;
        DateTimeOffset? notBefore = options?.Eta ?? (options?.Delay is { } delay && delay > TimeSpan.Zero ? now + delay : null);
        return new TaskMessage
        {
            Id = Guid.CreateVersion7(now),
            Task = request.Task,
            Args = request.ArgsJson,
            Queue = options?.Queue ?? defaults?.Queue ?? QueueNames.Default,
            Priority = options?.Priority ?? defaults?.Priority ?? 0,
            NotBefore = notBefore,
            ExpiresAt = options?.ExpiresAt,
            MaxAttempts = options?.MaxAttempts ?? defaults?.MaxAttempts ?? 5,
            Retry = options?.Retry ?? defaults?.Retry ?? RetryPolicy.Default,
            Timeout = options?.Timeout ?? defaults?.Timeout,
            IdempotencyKey = options?.IdempotencyKey,
            Headers = options?.Headers,
            CreatedAt = now,
        };
    }

    public Task<CancelOutcome> CancelAsync(Guid taskId, CancellationToken cancellationToken = default) =>
        backend.Queue.CancelAsync(taskId, cancellationToken);

    public Task<RetryOutcome> RetryAsync(Guid taskId, CancellationToken cancellationToken = default) =>
        backend.Queue.RetryAsync(taskId, cancellationToken);

    public Task<TaskRecord?> GetAsync(Guid taskId, CancellationToken cancellationToken = default) =>
        backend.Store.GetAsync(taskId, cancellationToken);
}
