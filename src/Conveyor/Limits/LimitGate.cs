using System.Collections.Concurrent;
using System.Globalization;
using Conveyor.Backends;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor;

/// <summary>What the limits stage decided for a lease.</summary>
internal enum AdmissionKind
{
    /// <summary>Start it now.</summary>
    Run,
    /// <summary>Keep the lease here and start it at <see cref="Admission.At"/>, within <see cref="LimitGate.HoldHorizon"/>.</summary>
    Hold,
    /// <summary>Put it back, unstarted and with its attempt unspent, to come back at <see cref="Admission.At"/> with
    /// <see cref="Admission.Headers"/> (no error is recorded: it is not a handler's snooze, and does not count as one).</summary>
    PutBack,
}

/// <summary>The limits stage's decision for one lease.</summary>
internal readonly record struct Admission(AdmissionKind Kind, DateTimeOffset At = default, IReadOnlyDictionary<string, string>? Headers = null)
{
    public static Admission Run { get; } = new(AdmissionKind.Run);
}

/// <summary>
/// The limits stage of the worker, between a fetch and the handlers (docs/limits.md): for each fetched batch it asks the
/// limit store once per distinct key for what the batch needs (rate start times, concurrency slots) and decides, lease by
/// lease, to start it now, hold it here until its start time (under <see cref="HoldHorizon"/>), or put it back unstarted
/// (its attempt is not spent, and it holds no worker slot while it waits). It keeps the concurrency slots its
/// leases hold, extends them with the leases and frees them, in batches, when their leases end.
/// </summary>
/// <remarks>
/// A task put back for a rate limit carries the start time reserved for it (<see cref="RateSlotHeader"/>) and runs on it
/// when it comes back, without reserving again: each such task is fetched about twice, and nothing polls. A task put back
/// because every slot of a concurrency key is held comes back after a wait that grows with its place among the denied
/// and with how long the key's tasks hold their slots here (<see cref="DeniedWait"/>).
/// </remarks>
internal sealed partial class LimitGate : IDisposable
{
    /// <summary>The header that carries the start time reserved for a task put back: <c>{attempt}:{µs since the epoch}</c>.
    /// It counts only for the same attempt (a retry after a run reserves anew) and until <see cref="RateGrace"/> (or the
    /// rate's interval, if longer) after that time.</summary>
    public const string RateSlotHeader = "conveyor-rate-slot";

    /// <summary>A start time this close ahead counts as now: 1 ms.</summary>
    internal static readonly TimeSpan Tolerance = TimeSpan.FromMilliseconds(1);

    /// <summary>Start times this close ahead are waited for here, holding the lease (not a handler); later ones are
    /// put back through the backend: 1 s, or a quarter of the lease if shorter.</summary>
    internal TimeSpan HoldHorizon { get; }

    /// <summary>How late a task may come back to a reserved start time and still use it: 1 s, or the rate's interval if
    /// longer. Later, it reserves anew, so that tasks delayed together (workers down) do not start in a burst.</summary>
    internal static readonly TimeSpan RateGrace = TimeSpan.FromSeconds(1);

    /// <summary>Shortest wait of a task denied a concurrency slot: 250 ms.</summary>
    internal static readonly TimeSpan MinDeniedWait = TimeSpan.FromMilliseconds(250);

    /// <summary>Longest wait of a task denied a concurrency slot: 30 s.</summary>
    internal static readonly TimeSpan MaxDeniedWait = TimeSpan.FromSeconds(30);

    private readonly IConveyorBackend _backend;
    private readonly Lazy<LimitRules> _rules;
    private readonly TaskRegistry _registry;
    private readonly WorkerStatus _status;
    private readonly TimeProvider _time;
    private readonly ILogger<LimitGate> _logger;
    private readonly TimeSpan _leaseDuration;
    // The slots each lease holds, from its admission until its lease ends here.
    private readonly ConcurrentDictionary<LeaseRef, HeldSlots> _held = new();
    private readonly ConcurrentQueue<ConcurrencySlot> _toRelease = new();
    private readonly SemaphoreSlim _releaseSignal = new(0);
    // How long tasks of each concurrency limit held their slots here, in seconds (moving average): sizes the wait of the
    // denied ones.
    private readonly ConcurrentDictionary<string, double> _meanHold = new(StringComparer.Ordinal);
    // Start times reserved ahead, by rate limit (RateCredit).
    private readonly ConcurrentDictionary<RateKey, RateCredit> _credits = new();

    private sealed record HeldSlots(ConcurrencySlot[] Slots, string[] Scopes, long AcquiredAt);

    public LimitGate(IConveyorBackend backend, TaskRegistry registry, IOptions<ConveyorOptions> options, WorkerStatus status, TimeProvider time,
        ILogger<LimitGate> logger)
    {
        _backend = backend;
        _registry = registry;
        _status = status;
        _time = time;
        _logger = logger;
        _leaseDuration = options.Value.Worker.LeaseDuration;
        HoldHorizon = TimeSpan.FromTicks(Math.Min(TimeSpan.FromSeconds(1).Ticks, _leaseDuration.Ticks / 4));
        // Built on first use: by then the options were validated and every task registered.
        _rules = new Lazy<LimitRules>(() => LimitRules.Build(options.Value.Limits, registry));
    }

    /// <summary>The limits in force.</summary>
    public LimitRules Rules => _rules.Value;

    /// <summary>No limit is set: the worker skips this stage.</summary>
    public bool IsEmpty => Rules.IsEmpty;

    /// <summary>Slots held by this worker's leases now (for tests and status).</summary>
    internal int HeldCount => _held.Values.Sum(h => h.Slots.Length);

    /// <summary>Decides, for each lease of a fetched batch, whether it starts now, waits here or is put back; takes the
    /// concurrency slots of those that start. One limit-store call per distinct key of the batch, concurrently.</summary>
    public async Task<Admission[]> AdmitAsync(IReadOnlyList<Lease> leases, CancellationToken cancellationToken)
    {
        var admissions = new Admission[leases.Count];
        Array.Fill(admissions, Admission.Run);
        var rules = Rules;
        var now = _time.GetUtcNow();
        var slotOf = new DateTimeOffset?[leases.Count];
        var reserved = new bool[leases.Count];
        List<ConcurrencyKey>?[]? concurrencyOf = null;
        Dictionary<RateKey, List<int>>? rateGroups = null;
        var rates = new List<RateKey>();
        var concurrency = new List<ConcurrencyKey>();
        for (var i = 0; i < leases.Count; i++)
        {
            var message = leases[i].Message;
            // Settled by the worker without running (expired, or no handler here): nothing to take for them.
            if ((message.ExpiresAt is { } expires && expires <= now) || !_registry.TryGet(message.Task, out _))
            {
                continue;
            }
            rates.Clear();
            concurrency.Clear();
            rules.Match(message, rates, concurrency);
            if (concurrency.Count > 0)
            {
                concurrencyOf ??= new List<ConcurrencyKey>?[leases.Count];
                concurrencyOf[i] = [.. concurrency];
            }
            if (rates.Count == 0)
            {
                continue;
            }
            if (ReservedSlot(leases[i], rates, now) is { } slot)
            {
                slotOf[i] = slot;
                continue;
            }
            rateGroups ??= [];
            foreach (var rate in rates)
            {
                if (!rateGroups.TryGetValue(rate, out var group))
                {
                    group = [];
                    rateGroups[rate] = group;
                }
                group.Add(i);
            }
        }
        if (rateGroups is not null)
        {
            await ReserveAsync(rateGroups, now, slotOf, reserved, cancellationToken).ConfigureAwait(false);
            // The store read its clock after ours: a time it gave as now is now, not a wait.
            now = _time.GetUtcNow();
        }
        for (var i = 0; i < leases.Count; i++)
        {
            if (slotOf[i] is { } slot && slot > now + Tolerance)
            {
                admissions[i] = slot - now <= HoldHorizon
                    ? new Admission(AdmissionKind.Hold, slot)
                    : new Admission(AdmissionKind.PutBack, slot, reserved[i] ? WithSlot(leases[i], slot) : null);
            }
        }
        if (concurrencyOf is not null)
        {
            await AcquireAsync(leases, concurrencyOf, admissions, slotOf, reserved, now, cancellationToken).ConfigureAwait(false);
        }
        return admissions;
    }

    private async Task ReserveAsync(Dictionary<RateKey, List<int>> groups, DateTimeOffset now, DateTimeOffset?[] slotOf, bool[] reserved,
        CancellationToken cancellationToken)
    {
        var calls = groups.Select(async group =>
        {
            var credit = _credits.GetOrAdd(group.Key, rate => new RateCredit(_backend.Limits, rate, ex => LogBackendError(ex, "reserve start times ahead")));
            var oldest = now - (group.Key.Interval > RateGrace ? group.Key.Interval : RateGrace);
            return (Group: group.Value, Slots: await credit.TakeAsync(group.Value.Count, oldest, cancellationToken).ConfigureAwait(false));
        }).ToList();
        foreach (var (group, slots) in await Task.WhenAll(calls).ConfigureAwait(false))
        {
            for (var j = 0; j < group.Count; j++)
            {
                var i = group[j];
                // Under two rate limits (its queue's and its own) a task starts at the later of its two times.
                slotOf[i] = slotOf[i] is { } other && other > slots[j] ? other : slots[j];
                reserved[i] = true;
            }
        }
    }

    private async Task AcquireAsync(IReadOnlyList<Lease> leases, List<ConcurrencyKey>?[] concurrencyOf, Admission[] admissions,
        DateTimeOffset?[] slotOf, bool[] reserved, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var groups = new Dictionary<string, (int Limit, string Scope, List<int> Leases)>(StringComparer.Ordinal);
        for (var i = 0; i < leases.Count; i++)
        {
            if (concurrencyOf[i] is not { } keys || admissions[i].Kind == AdmissionKind.PutBack)
            {
                continue;
            }
            foreach (var key in keys)
            {
                if (!groups.TryGetValue(key.Key, out var group))
                {
                    group = (key.Limit, key.Scope, []);
                    groups[key.Key] = group;
                }
                group.Leases.Add(i);
            }
        }
        if (groups.Count == 0)
        {
            return;
        }
        var owner = _status.WorkerId;
        var granted = new ConcurrentBag<(int Lease, ConcurrencySlot Slot, string Scope)>();
        var denied = new ConcurrentDictionary<int, (string Scope, int Rank, int Limit)>();
        var calls = groups.Select(async group =>
        {
            var (limit, scope, members) = group.Value;
            var wanted = members.Select(i => new ConcurrencySlot(group.Key, leases[i].Message.Id, leases[i].Token)).ToArray();
            var answers = await _backend.Limits.AcquireConcurrencySlotsAsync(group.Key, limit, wanted, owner, _leaseDuration, cancellationToken).ConfigureAwait(false);
            var rank = 0;
            for (var j = 0; j < members.Count; j++)
            {
                if (answers[j])
                {
                    granted.Add((members[j], wanted[j], scope));
                }
                else
                {
                    denied.TryAdd(members[j], (scope, rank++, limit));
                }
            }
        }).ToList();
        try
        {
            await Task.WhenAll(calls).ConfigureAwait(false);
        }
        catch
        {
            // The batch goes back whole: the slots some calls took are freed.
            foreach (var (_, slot, _) in granted)
            {
                _toRelease.Enqueue(slot);
            }
            _releaseSignal.Release();
            throw;
        }
        var start = _time.GetTimestamp();
        var release = false;
        foreach (var byLease in granted.GroupBy(g => g.Lease))
        {
            var i = byLease.Key;
            if (denied.ContainsKey(i))
            {
                // Denied by another of its keys: the slots it got go back.
                foreach (var (_, slot, _) in byLease)
                {
                    _toRelease.Enqueue(slot);
                }
                release = true;
                continue;
            }
            _held[leases[i].Ref] = new HeldSlots([.. byLease.Select(g => g.Slot)], [.. byLease.Select(g => g.Scope)], start);
        }
        if (release)
        {
            _releaseSignal.Release();
        }
        foreach (var (i, (scope, rank, limit)) in denied)
        {
            // A start time reserved for it stays its own: it uses it if it comes back within the grace.
            var headers = reserved[i] && slotOf[i] is { } slot ? WithSlot(leases[i], slot) : null;
            admissions[i] = new Admission(AdmissionKind.PutBack, now + DeniedWait(scope, rank, limit), headers);
        }
    }

    /// <summary>How long a task denied a slot waits: the key's tasks' mean hold here (at least <see cref="MinDeniedWait"/>),
    /// times one more for each <paramref name="limit"/> tasks denied before it in the batch, at most
    /// <see cref="MaxDeniedWait"/>, ±20 %. So the denied come back about as fast as slots free up, not all at once.</summary>
    internal TimeSpan DeniedWait(string scope, int rank, int limit)
    {
        var hold = _meanHold.TryGetValue(scope, out var seconds) ? TimeSpan.FromSeconds(seconds) : TimeSpan.Zero;
        var basis = hold > MinDeniedWait ? hold : MinDeniedWait;
        var wait = basis * (1 + (rank / (double)limit));
        if (wait > MaxDeniedWait)
        {
            wait = MaxDeniedWait;
        }
        return wait * (0.8 + (Random.Shared.NextDouble() * 0.4));
    }

    /// <summary>The start time reserved for this attempt of the task, when it carries one that still counts.</summary>
    private static DateTimeOffset? ReservedSlot(Lease lease, List<RateKey> rates, DateTimeOffset now)
    {
        if (lease.Message.Headers is not { } headers || !headers.TryGetValue(RateSlotHeader, out var text))
        {
            return null;
        }
        var colon = text.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0
            || !int.TryParse(text.AsSpan(0, colon), NumberStyles.None, CultureInfo.InvariantCulture, out var attempt)
            || !long.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var microseconds)
            || attempt != lease.Attempt)
        {
            return null;
        }
        var slot = LimitTimes.FromMicroseconds(microseconds);
        var grace = RateGrace;
        foreach (var rate in rates)
        {
            if (rate.Interval > grace)
            {
                grace = rate.Interval;
            }
        }
        return slot >= now - grace ? slot : null;
    }

    /// <summary>The task's headers as stored (<see cref="Completion.Headers"/>: with the reserved ones of its retry
    /// policy) with the start time reserved for this attempt.</summary>
    private static IReadOnlyDictionary<string, string>? WithSlot(Lease lease, DateTimeOffset slot)
    {
        var headers = lease.Message.Headers is { } existing ? new Dictionary<string, string>(existing, StringComparer.Ordinal) : new(StringComparer.Ordinal);
        headers[RateSlotHeader] = lease.Attempt.ToString(CultureInfo.InvariantCulture) + ":" + LimitTimes.ToMicroseconds(slot).ToString(CultureInfo.InvariantCulture);
        return RetryHeaders.ToStored(lease.Message with { Headers = headers });
    }

    /// <summary>The lease ended here (its outcome written, or it was handed back or lost): its slots are freed by the
    /// next release batch.</summary>
    public void Ended(LeaseRef lease)
    {
        if (!_held.TryRemove(lease, out var held))
        {
            return;
        }
        var seconds = _time.GetElapsedTime(held.AcquiredAt).TotalSeconds;
        foreach (var scope in held.Scopes)
        {
            _meanHold.AddOrUpdate(scope, seconds, (_, mean) => (mean * 0.8) + (seconds * 0.2));
        }
        foreach (var slot in held.Slots)
        {
            _toRelease.Enqueue(slot);
        }
        _releaseSignal.Release();
    }

    /// <summary>Frees the slots of ended leases in batches (those that end while a call is in flight form the next), until
    /// <paramref name="stop"/>; then frees what is left, once.</summary>
    public async Task RunReleasesAsync(CancellationToken stop)
    {
        var failures = 0;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await _releaseSignal.WaitAsync(stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
            if (await ReleaseQueuedAsync(stop).ConfigureAwait(false))
            {
                failures = 0;
                continue;
            }
            // Kept for the next try; slots not freed run out with their lease anyway.
            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(5000, 100 * Math.Pow(2, Math.Min(++failures, 10)))), _time, stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
            _releaseSignal.Release();
        }
        await ReleaseQueuedAsync(CancellationToken.None).ConfigureAwait(false);
    }

    private async Task<bool> ReleaseQueuedAsync(CancellationToken cancellationToken)
    {
        var batch = new List<ConcurrencySlot>();
        while (_toRelease.TryDequeue(out var slot))
        {
            batch.Add(slot);
        }
        if (batch.Count == 0)
        {
            return true;
        }
        try
        {
            await _backend.Limits.ReleaseConcurrencySlotsAsync(batch, _status.WorkerId, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogBackendError(ex, "release concurrency slots");
            foreach (var slot in batch)
            {
                _toRelease.Enqueue(slot);
            }
            return false;
        }
    }

    /// <summary>Extends the slots held here with the leases (the heartbeat calls it right after extending them).</summary>
    public async Task ExtendAsync(CancellationToken cancellationToken)
    {
        var slots = _held.Values.SelectMany(h => h.Slots).ToList();
        if (slots.Count == 0)
        {
            return;
        }
        var lost = await _backend.Limits.ExtendConcurrencySlotsAsync(slots, _status.WorkerId, _leaseDuration, cancellationToken).ConfigureAwait(false);
        if (lost.Count > 0)
        {
            // Its handler runs on: the slot ran out (the heartbeat stalled for a lease) or another lease took it over.
            LogSlotsLost(lost.Count, string.Join(", ", lost.Select(s => s.Key).Distinct().Take(5)));
        }
    }

    public void Dispose() => _releaseSignal.Dispose();

    [LoggerMessage(60, LogLevel.Warning, "Backend call '{Operation}' failed; retrying with backoff")]
    private partial void LogBackendError(Exception exception, string operation);

    [LoggerMessage(61, LogLevel.Warning, "{Count} concurrency slots held by running tasks ran out before their extension (keys {Keys}); their limits may be passed until those tasks end")]
    private partial void LogSlotsLost(int count, string keys);
}
