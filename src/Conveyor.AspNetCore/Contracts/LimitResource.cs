using Conveyor.Backends;

namespace Conveyor.AspNetCore.Contracts;

/// <summary>A limit in force in the serving process, with its use now across every worker: <c>GET /api/v1/limits</c>.</summary>
public sealed record LimitResource
{
    /// <summary>The task name it limits, or null for a queue's limit.</summary>
    public string? Task { get; init; }
    /// <summary>The queue it limits, or null for a task's limit.</summary>
    public string? Queue { get; init; }
    /// <summary>Its rate (<c>10/m</c>), or null.</summary>
    public string? Rate { get; init; }
    /// <summary>Its concurrency limit, or null.</summary>
    public int? Concurrency { get; init; }
    /// <summary>What keys the concurrency limit (a property path of the arguments, or <c>(code)</c>), or null.</summary>
    public string? ConcurrencyKey { get; init; }
    /// <summary>For a rate: the time up to which start times are reserved (tasks waiting for them are put back until
    /// then); null when the limit does not bind now.</summary>
    public DateTimeOffset? ReservedUntil { get; init; }
    /// <summary>For a concurrency limit: slots held now (tasks running, or fetched and about to).</summary>
    public int Running { get; init; }
    /// <summary>For a keyed concurrency limit: slots held now by key (tasks without a key under "").</summary>
    public IReadOnlyDictionary<string, int>? RunningByKey { get; init; }

    /// <summary>The resource of <paramref name="limit"/> with the store's <paramref name="usage"/> read at <paramref name="now"/>.</summary>
    public static LimitResource From(LimitDescription limit, LimitUsage usage, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(limit);
        ArgumentNullException.ThrowIfNull(usage);
        var held = usage.Concurrency.Where(c => limit.Owns(c.Key)).ToList();
        var reserved = usage.Rates.FirstOrDefault(r => r.Key == limit.Scope)?.NextFree;
        return new LimitResource
        {
            Task = limit.Task,
            Queue = limit.Queue,
            Rate = limit.Rate,
            Concurrency = limit.Concurrency,
            ConcurrencyKey = limit.ConcurrencyKey,
            ReservedUntil = limit.Rate is not null && reserved > now ? reserved : null,
            Running = limit.Concurrency is null ? 0 : held.Sum(c => c.Held),
            RunningByKey = limit.Concurrency is null || limit.ConcurrencyKey is null
                ? null
                : held.ToDictionary(c => limit.KeyOf(c.Key) ?? "", c => c.Held, StringComparer.Ordinal),
        };
    }
}
