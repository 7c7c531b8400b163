using System.Globalization;
using System.Text.Json;
using Conveyor.Backends;
using StackExchange.Redis;

namespace Conveyor.Redis;

public sealed partial class RedisBackend
{
    private static readonly string InterruptedError = JsonSerializer.Serialize(LeaseRules.InterruptedError, ConveyorJson.Options);

    /// <inheritdoc />
    public async Task<IReadOnlyList<EnqueueResult>> EnqueueAsync(IReadOnlyList<TaskMessage> messages, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(messages);
        cancellationToken.ThrowIfCancellationRequested();
        if (messages.Count == 0)
        {
            return [];
        }
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var args = new RedisValue[3 + (messages.Count * RedisScripts.EnqueueFields)];
        args[0] = _base;
        args[1] = Ms(Now());
        args[2] = messages.Count;
        var i = 3;
        foreach (var m in messages)
        {
            args[i++] = IdText(m.Id);
            args[i++] = m.Task;
            args[i++] = m.Queue;
            args[i++] = m.Priority;
            args[i++] = m.MaxAttempts;
            args[i++] = Opt(m.IdempotencyKey);
            args[i++] = Opt(m.NotBefore is { } nb ? Ms(nb) : null);
            args[i++] = Opt(m.ExpiresAt is { } exp ? Ms(exp) : null);
            args[i++] = RedisMessageCodec.Encode(m);
        }
        var reply = (RedisResult[])(await RunAsync(db, RedisScripts.Enqueue, args).ConfigureAwait(false))!;
        var results = new EnqueueResult[reply.Length];
        for (var r = 0; r < reply.Length; r++)
        {
            var row = (RedisResult[])reply[r]!;
            results[r] = new EnqueueResult(Guid.Parse((string)row[0]!), (int)row[1] == 1, (TaskState)(int)row[2]);
        }
        return results;
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<Lease>> FetchAsync(FetchRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        // Never waits: workers wait on the notifier's ready notifications (the scripts' wake-ups).
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();
        // Not cancelled midway: a script that ran must hand its leases to the caller.
        var queues = QueueOrder.For(request);
        var now = Now();
        var expires = now + (long)request.LeaseDuration.TotalMilliseconds;
        var token = Random.Shared.NextInt64(1, long.MaxValue);
        var args = new RedisValue[7 + queues.Count];
        args[0] = _base;
        args[1] = Ms(now);
        args[2] = Ms(expires);
        args[3] = token;
        args[4] = request.WorkerId;
        args[5] = request.MaxCount;
        args[6] = queues.Count;
        for (var q = 0; q < queues.Count; q++)
        {
            args[7 + q] = queues[q].Name;
        }
        var reply = (RedisResult[])(await RunAsync(db, RedisScripts.Fetch, args).ConfigureAwait(false))!;
        var leases = new List<Lease>(reply.Length / RedisScripts.FetchFields);
        var expiresAt = DateTimeOffset.FromUnixTimeMilliseconds(expires);
        var shared = default(RedisMessageCodec.SharedFields);
        for (var f = 0; f + RedisScripts.FetchFields <= reply.Length; f += RedisScripts.FetchFields)
        {
            var message = RedisMessageCodec.Decode((string?)reply[f + 1], Guid.Parse((string)reply[f]!), MsOrNull(reply[f + 2]), MsOrNull(reply[f + 3]),
                (string?)reply[f + 7], ref shared);
            leases.Add(new Lease(message, token, (int)reply[f + 4], !reply[f + 5].IsNull && (string?)reply[f + 5] == "1", expiresAt)
            {
                RecordStartFirst = !reply[f + 6].IsNull && (long)reply[f + 6] > 0,
            });
        }
        return leases;
    }

    private static DateTimeOffset? MsOrNull(RedisResult value) =>
        value.IsNull ? null : DateTimeOffset.FromUnixTimeMilliseconds((long)value);

    /// <inheritdoc />
    public async Task<IReadOnlyList<CompletionOverride>> CompleteAsync(IReadOnlyList<Completion> completions, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(completions);
        if (completions.Count == 0)
        {
            return CompletionOverride.None;
        }
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var args = new RedisValue[2 + (completions.Count * RedisScripts.CompleteFields)];
        args[0] = _base;
        args[1] = completions.Count;
        var i = 2;
        foreach (var c in completions)
        {
            var state = c.Kind.StateAfter();
            args[i++] = IdText(c.Lease.TaskId);
            args[i++] = c.Lease.Token;
            args[i++] = (int)state;
            args[i++] = Opt(c.Result);
            args[i++] = Opt(c.Error is null ? null : JsonSerializer.Serialize(c.Error, ConveyorJson.Options));
            args[i++] = Opt(c.Error is null ? null : JsonSerializer.Serialize(new AttemptError(c.Attempt, c.At, c.Error), ConveyorJson.Options));
            args[i++] = Opt(c.Kind == CompletionKind.Retry ? Ms(c.RetryAt ?? c.At) : null);
            args[i++] = Ms(c.At);
            args[i++] = c.Unstarted && c.Kind == CompletionKind.Retry ? 1 : 0;
            // An empty map clears the headers, as on the other backends (StoredHeaders gives no text for none).
            args[i++] = Opt(c.Kind == CompletionKind.Retry && c.Headers is { } headers ? StoredHeaders.Serialize(headers) ?? "{}" : null);
        }
        var reply = await RunAsync(db, RedisScripts.Complete, args).ConfigureAwait(false);
        if (reply.Length == 0)
        {
            return CompletionOverride.None;
        }
        var overrides = new List<CompletionOverride>(reply.Length / 2);
        for (var o = 0; o + 1 < reply.Length; o += 2)
        {
            var lease = completions[(int)reply[o]].Lease;
            var state = (int)reply[o + 1];
            overrides.Add(state < 0 ? CompletionOverride.Ignored(lease) : new CompletionOverride(lease, (TaskState)state));
        }
        return overrides;
    }

    /// <inheritdoc />
    public async Task<LeaseExtension> ExtendLeasesAsync(IReadOnlyList<LeaseRef> leases, TimeSpan duration, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(leases);
        if (leases.Count == 0)
        {
            return LeaseExtension.None;
        }
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var args = LeaseArgs(leases, Ms(Now() + (long)duration.TotalMilliseconds));
        var reply = (int[])(await RunAsync(db, RedisScripts.Extend, args).ConfigureAwait(false))!;
        var cancel = new List<Guid>();
        var lost = new List<LeaseRef>();
        for (var i = 0; i < leases.Count; i++)
        {
            if (reply[i] == 0)
            {
                lost.Add(leases[i]);
            }
            else if (reply[i] == 2)
            {
                cancel.Add(leases[i].TaskId);
            }
        }
        return new LeaseExtension(cancel, lost);
    }

    /// <summary>ARGV of a script over leases: B, <paramref name="head"/>, the count, then id, token pairs.</summary>
    private RedisValue[] LeaseArgs(IReadOnlyList<LeaseRef> leases, params ReadOnlySpan<RedisValue> head)
    {
        var args = new RedisValue[2 + head.Length + (leases.Count * 2)];
        args[0] = _base;
        head.CopyTo(args.AsSpan(1));
        args[1 + head.Length] = leases.Count;
        var i = 2 + head.Length;
        foreach (var lease in leases)
        {
            args[i++] = IdText(lease.TaskId);
            args[i++] = lease.Token;
        }
        return args;
    }

    /// <summary>What end_lease.lua needs to settle a lease by <see cref="LeaseRules"/>: now, the interrupted error, now as
    /// JSON (for its errors entry) and the interruption bound.</summary>
    private static RedisValue[] EndLeaseArgs(long now) =>
        [Ms(now), InterruptedError, JsonSerializer.Serialize(DateTimeOffset.FromUnixTimeMilliseconds(now), ConveyorJson.Options), LeaseRules.MaxInterruptions];

    /// <inheritdoc />
    public async Task<IReadOnlyList<LeaseRef>> StartAsync(IReadOnlyList<LeaseRef> leases, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(leases);
        if (leases.Count == 0)
        {
            return [];
        }
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var reply = (int[])(await RunAsync(db, RedisScripts.Start, LeaseArgs(leases)).ConfigureAwait(false))!;
        var lost = new List<LeaseRef>();
        for (var i = 0; i < leases.Count; i++)
        {
            if (reply[i] == 0)
            {
                lost.Add(leases[i]);
            }
        }
        return lost;
    }

    /// <inheritdoc />
    public async Task<LeaseSweep> AbandonLeasesAsync(string workerId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(workerId);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        return Sweep(await RunAsync(db, RedisScripts.Abandon, [_base, workerId, .. EndLeaseArgs(Now())]).ConfigureAwait(false));
    }

    /// <summary>Reads end_leases' reply: { count, id, state, id, state, … }.</summary>
    private static LeaseSweep Sweep(RedisResult reply)
    {
        var items = (RedisResult[])reply!;
        var count = (int)items[0];
        if (count == 0)
        {
            return LeaseSweep.None;
        }
        var ended = new EndedLease[(items.Length - 1) / 2];
        for (var i = 0; i < ended.Length; i++)
        {
            ended[i] = new EndedLease(Guid.Parse((string)items[1 + (2 * i)]!), (TaskState)(int)items[2 + (2 * i)]);
        }
        return new LeaseSweep(count, ended);
    }

    /// <inheritdoc />
    public async Task<LeaseSweep> ReleaseAsync(IReadOnlyList<LeaseRef> leases, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(leases);
        if (leases.Count == 0)
        {
            return LeaseSweep.None;
        }
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        return Sweep(await RunAsync(db, RedisScripts.Release, LeaseArgs(leases, EndLeaseArgs(Now()))).ConfigureAwait(false));
    }

    /// <inheritdoc />
    public async Task<LeaseSweep> RequeueExpiredLeasesAsync(CancellationToken cancellationToken)
    {
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        return Sweep(await RunAsync(db, RedisScripts.RequeueExpired, [_base, .. EndLeaseArgs(Now())]).ConfigureAwait(false));
    }

    /// <inheritdoc />
    public async Task<int> PromoteDueAsync(CancellationToken cancellationToken)
    {
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        return (int)await RunAsync(db, RedisScripts.Promote, [_base, Ms(Now())]).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<DateTimeOffset?> NextDueAsync(CancellationToken cancellationToken)
    {
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var first = await db.SortedSetRangeByRankWithScoresAsync(_base + "scheduled", 0, 0).ConfigureAwait(false);
        return first.Length == 0 ? null : DateTimeOffset.FromUnixTimeMilliseconds((long)first[0].Score);
    }

    /// <inheritdoc />
    public async Task<CancelOutcome> CancelAsync(Guid taskId, CancellationToken cancellationToken)
    {
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var code = (int)await RunAsync(db, RedisScripts.Cancel, [_base, IdText(taskId), Ms(Now())]).ConfigureAwait(false);
        return code switch
        {
            1 => CancelOutcome.Cancelled,
            2 => CancelOutcome.Requested,
            3 => CancelOutcome.AlreadyFinished,
            _ => CancelOutcome.NotFound,
        };
    }

    /// <inheritdoc />
    public async Task<RetryOutcome> RetryAsync(Guid taskId, CancellationToken cancellationToken)
    {
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var code = (int)await RunAsync(db, RedisScripts.Retry, [_base, IdText(taskId), Ms(Now())]).ConfigureAwait(false);
        return code switch
        {
            1 => RetryOutcome.Requeued,
            2 => RetryOutcome.NotRetryable,
            _ => RetryOutcome.NotFound,
        };
    }

    /// <inheritdoc />
    public async Task PauseQueueAsync(string queue, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(queue);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        await db.HashSetAsync(_base + "queues", queue, "1").ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task ResumeQueueAsync(string queue, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(queue);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        await db.HashSetAsync(_base + "queues", queue, "0").ConfigureAwait(false);
        await _notifier.PublishAsync(NotifierChannels.Ready, queue, cancellationToken).ConfigureAwait(false);
    }
}
