namespace Conveyor;

/// <summary>A limit in force in a process, as the API and the CLI list it (docs/limits.md).</summary>
/// <param name="Scope">Its key in the limit store: <c>task:{name}</c> or <c>queue:{name}</c>; a keyed concurrency limit's
/// keys are <c>{scope}#{key}</c>.</param>
/// <param name="Task">The task name it limits, or null for a queue's limit.</param>
/// <param name="Queue">The queue it limits, or null for a task's limit.</param>
/// <param name="Rate">Its rate (<c>10/m</c>), or null.</param>
/// <param name="Concurrency">Its concurrency limit, or null.</param>
/// <param name="ConcurrencyKey">What keys the concurrency limit: a property path of the arguments, <c>(code)</c> for a
/// function set at registration, or null when all its tasks count together.</param>
public sealed record LimitDescription(string Scope, string? Task, string? Queue, string? Rate, int? Concurrency, string? ConcurrencyKey)
{
    /// <summary>Whether a limit-store key (<see cref="Backends.RateUsage.Key"/>, <see cref="Backends.ConcurrencyUsage.Key"/>)
    /// belongs to this limit.</summary>
    public bool Owns(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        return key == Scope || (key.Length > Scope.Length && key[Scope.Length] == '#' && key.StartsWith(Scope, StringComparison.Ordinal));
    }

    /// <summary>The part of a keyed concurrency limit's store key after <c>{scope}#</c>; null for the limit's own key.</summary>
    public string? KeyOf(string key) => Owns(key) && key.Length > Scope.Length ? key[(Scope.Length + 1)..] : null;

    /// <summary>Every limit in force with <paramref name="options"/> and the tasks of <paramref name="registry"/>: the
    /// registrations' overridden by <see cref="ConveyorOptions.Limits"/>, by scope.</summary>
    public static IReadOnlyList<LimitDescription> Describe(ConveyorOptions options, TaskRegistry registry)
    {
        ArgumentNullException.ThrowIfNull(options);
        return LimitRules.Build(options.Limits, registry).All.Select(l => new LimitDescription(
            l.Scope,
            l.Scope.StartsWith("task:", StringComparison.Ordinal) ? l.Scope["task:".Length..] : null,
            l.Scope.StartsWith("queue:", StringComparison.Ordinal) ? l.Scope["queue:".Length..] : null,
            l.Rate?.ToString(),
            l.Concurrency,
            l.KeyFunction is not null ? "(code)" : l.KeyPath)).ToList();
    }
}
