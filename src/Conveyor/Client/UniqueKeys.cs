using Conveyor.Backends;

namespace Conveyor;

/// <summary>
/// Unique tasks: before messages with a <see cref="TaskMessage.UniqueKey"/> are stored, each key is claimed in the
/// coordination role (<see cref="IUniqueKeyStore"/>); a key whose claim still holds — its task is queued, scheduled,
/// running or retrying, or finished less than its window ago — returns that task instead of storing a new one. Runs at
/// the end of the enqueue pipeline, so middleware see every message and every result; a batch without unique keys pays
/// nothing.
/// </summary>
public static class UniqueKeys
{
    /// <summary>How long a claim holds while its task is not stored yet (the enqueue that claimed it is on its way, or
    /// died): 30 s.</summary>
    public static TimeSpan PendingClaim { get; } = TimeSpan.FromSeconds(30);

    private const int MaxConflicts = 20;

    /// <summary>Stores <paramref name="messages"/> through <paramref name="store"/>, claiming their unique keys first.</summary>
    internal static async ValueTask<IReadOnlyList<EnqueueResult>> EnqueueAsync(IConveyorBackend backend, TimeProvider time, TaskMessage[] messages,
        Func<TaskMessage[], ValueTask<IReadOnlyList<EnqueueResult>>> store, CancellationToken cancellationToken)
    {
        if (!Array.Exists(messages, m => m.UniqueKey is not null))
        {
            return await store(messages).ConfigureAwait(false);
        }
        var results = new EnqueueResult?[messages.Length];
        var firstOfKey = new Dictionary<string, int>(StringComparer.Ordinal);
        var claimed = new List<int>();
        try
        {
            for (var i = 0; i < messages.Length; i++)
            {
                if (messages[i].UniqueKey is not { } key || firstOfKey.ContainsKey(key))
                {
                    continue;
                }
                firstOfKey[key] = i;
                if (await ClaimAsync(backend, time, messages[i], cancellationToken).ConfigureAwait(false) is { } held)
                {
                    results[i] = held;
                }
                else
                {
                    claimed.Add(i);
                }
            }
            var toStore = new List<int>(messages.Length);
            for (var i = 0; i < messages.Length; i++)
            {
                if (results[i] is null && (messages[i].UniqueKey is not { } key || firstOfKey[key] == i))
                {
                    toStore.Add(i);
                }
            }
            var stored = toStore.Count == 0 ? [] : await store([.. toStore.Select(i => messages[i])]).ConfigureAwait(false);
            for (var j = 0; j < toStore.Count; j++)
            {
                results[toStore[j]] = stored[j];
            }
            foreach (var i in claimed)
            {
                // The idempotency key matched an existing task: the key's claim names that task, not the message never stored.
                if (results[i] is { Created: false } existing)
                {
                    var message = messages[i];
                    await backend.UniqueKeys.TryClaimUniqueKeyAsync(Claim(message, existing.Id, time), message.Id, cancellationToken).ConfigureAwait(false);
                }
            }
            claimed.Clear();
        }
        finally
        {
            // Claims of messages that were not stored (the store failed, or a later claim threw): given back.
            foreach (var i in claimed)
            {
                await backend.UniqueKeys.ReleaseUniqueKeyAsync(messages[i].UniqueKey!, messages[i].Id, CancellationToken.None).ConfigureAwait(false);
            }
        }
        for (var i = 0; i < messages.Length; i++)
        {
            if (results[i] is null && messages[i].UniqueKey is { } key)
            {
                // A later message of the batch with a key an earlier one holds: that one's task.
                var first = results[firstOfKey[key]]!.Value;
                results[i] = new EnqueueResult(first.Id, false, first.State) { MatchedUniqueKey = true };
            }
        }
        return [.. results.Select(r => r!.Value)];
    }

    /// <summary>Claims the message's key for it and returns null, or returns the result naming the task that holds it.</summary>
    private static async Task<EnqueueResult?> ClaimAsync(IConveyorBackend backend, TimeProvider time, TaskMessage message, CancellationToken cancellationToken)
    {
        var keys = backend.UniqueKeys;
        for (var conflicts = 0; ; conflicts++)
        {
            var current = await keys.GetUniqueClaimAsync(message.UniqueKey!, cancellationToken).ConfigureAwait(false);
            if (current is not null && await HeldAsync(backend, current, time.GetUtcNow(), cancellationToken).ConfigureAwait(false) is { } state)
            {
                return new EnqueueResult(current.TaskId, false, state) { MatchedUniqueKey = true };
            }
            if (await keys.TryClaimUniqueKeyAsync(Claim(message, message.Id, time), current?.TaskId, cancellationToken).ConfigureAwait(false))
            {
                return null;
            }
            if (conflicts == MaxConflicts)
            {
                throw new InvalidOperationException($"unique key '{message.UniqueKey}' kept changing hands while it was being claimed ({MaxConflicts} conflicts)");
            }
        }
    }

    /// <summary>
    /// Removes the claims that no longer hold (their task finished longer than their window ago, or is gone), reading
    /// <paramref name="pageSize"/> claims at a time; returns how many it removed. A claim is removed only if the same task
    /// still holds it, so a key claimed anew during the sweep stays claimed. Claims need no removal to stop holding
    /// (liveness is judged from the task): this only keeps the table from growing with every key ever used.
    /// </summary>
    public static async Task<int> SweepAsync(IConveyorBackend backend, TimeProvider time, int pageSize, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(time);
        var removed = 0;
        string? cursor = null;
        do
        {
            var page = await backend.UniqueKeys.ListUniqueClaimsAsync(cursor, pageSize, cancellationToken).ConfigureAwait(false);
            foreach (var claim in page.Claims)
            {
                if (await HeldAsync(backend, claim, time.GetUtcNow(), cancellationToken).ConfigureAwait(false) is null)
                {
                    await backend.UniqueKeys.ReleaseUniqueKeyAsync(claim.Key, claim.TaskId, cancellationToken).ConfigureAwait(false);
                    removed++;
                }
            }
            cursor = page.NextCursor;
        }
        while (cursor is not null);
        return removed;
    }

    /// <summary>The state of the task that holds <paramref name="claim"/>, or null when the claim no longer holds.</summary>
    private static async Task<TaskState?> HeldAsync(IConveyorBackend backend, UniqueClaim claim, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var task = await backend.Store.GetAsync(claim.TaskId, cancellationToken).ConfigureAwait(false);
        if (task is null)
        {
            // Not stored yet (its enqueue is on the way), or gone (never stored, or deleted by retention).
            return now - claim.ClaimedAt < PendingClaim ? TaskState.Queued : null;
        }
        if (!task.State.IsTerminal())
        {
            return task.State;
        }
        return task.FinishedAt is { } finished && finished + claim.Window > now ? task.State : null;
    }

    private static UniqueClaim Claim(TaskMessage message, Guid taskId, TimeProvider time) =>
        new(message.UniqueKey!, taskId, time.GetUtcNow(), message.UniqueFor is { } window && window > TimeSpan.Zero ? window : TimeSpan.Zero);
}
