using System.Text.Json;

namespace Conveyor.Scheduling;

/// <summary>Checks a schedule before it is stored: in code, configuration and the HTTP API alike, so each bad value is
/// refused with the field it is in and what is accepted.</summary>
public static class ScheduleDefinitionValidator
{
    /// <summary>Longest schedule name, in characters.</summary>
    public const int MaxNameLength = 100;

    /// <summary>Largest <see cref="ScheduleDefinition.MaxCatchUp"/>.</summary>
    public const int MaxCatchUpLimit = 10_000;

    /// <summary>Whether <paramref name="name"/> is a valid schedule name: 1 to 100 letters, digits, <c>.</c>, <c>-</c>, <c>_</c>.</summary>
    public static bool IsValidName(string? name) => QueueNames.IsValid(name);

    /// <summary>Adds every problem of <paramref name="definition"/> to <paramref name="errors"/>, naming fields with
    /// <paramref name="prefix"/> (camelCase, as in the HTTP API).</summary>
    public static void Validate(ScheduleDefinition definition, string prefix, List<FieldError> errors)
    {
        ArgumentNullException.ThrowIfNull(definition);
        ArgumentNullException.ThrowIfNull(errors);
        if (!IsValidName(definition.Name))
        {
            errors.Add(new(prefix + "name", $"'{definition.Name}' is not a valid schedule name: 1 to {MaxNameLength} letters, digits, '.', '-' or '_'"));
        }
        ScheduleTiming.TryCreate(definition, DateTimeOffset.UnixEpoch, prefix, errors);
        if (string.IsNullOrWhiteSpace(definition.Task))
        {
            errors.Add(new(prefix + "task", "is required"));
        }
        else if (definition.Task.Length > TaskRequestValidator.MaxTaskNameLength)
        {
            errors.Add(new(prefix + "task", $"is longer than {TaskRequestValidator.MaxTaskNameLength} characters"));
        }
        if (definition.Args is { } args && !IsJson(args))
        {
            errors.Add(new(prefix + "args", "is not valid JSON"));
        }
        if (!QueueNames.IsValid(definition.Queue))
        {
            errors.Add(new(prefix + "queue", $"'{definition.Queue}' is not a valid queue name: 1 to {QueueNames.MaxLength} letters, digits, '.', '-' or '_'"));
        }
        if (definition.Priority is < Priorities.Min or > Priorities.Max)
        {
            errors.Add(new(prefix + "priority", $"{definition.Priority} is outside [{Priorities.Min}, {Priorities.Max}]"));
        }
        if (definition.MaxAttempts is { } attempts && (attempts < 1 || attempts > TaskRequestValidator.MaxAttemptsLimit))
        {
            errors.Add(new(prefix + "maxAttempts", $"{attempts} is outside [1, {TaskRequestValidator.MaxAttemptsLimit}]"));
        }
        if (definition.Timeout is { } timeout && timeout <= TimeSpan.Zero)
        {
            errors.Add(new(prefix + "timeout", "must be positive"));
        }
        if (definition.ExpiresAfter is { } expires && expires <= TimeSpan.Zero)
        {
            errors.Add(new(prefix + "expiresAfter", "must be positive"));
        }
        if (definition.MisfireGrace < TimeSpan.Zero)
        {
            errors.Add(new(prefix + "misfireGrace", "must not be negative"));
        }
        if (!Enum.IsDefined(definition.Misfire))
        {
            errors.Add(new(prefix + "misfire", $"'{definition.Misfire}' is not one of fireOnce, skip, fireAll"));
        }
        if (definition.MaxCatchUp is < 1 or > MaxCatchUpLimit)
        {
            errors.Add(new(prefix + "maxCatchUp", $"{definition.MaxCatchUp} is outside [1, {MaxCatchUpLimit}]"));
        }
    }

    /// <summary>Throws <see cref="ScheduleValidationException"/> listing every problem of <paramref name="definition"/>.</summary>
    public static void ThrowIfInvalid(ScheduleDefinition definition)
    {
        var errors = new List<FieldError>();
        Validate(definition, "", errors);
        if (errors.Count > 0)
        {
            throw new ScheduleValidationException(errors);
        }
    }

    private static bool IsJson(string text)
    {
        try
        {
            using var _ = JsonDocument.Parse(text);
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }
}
