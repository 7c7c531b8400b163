using System.Collections.Concurrent;
using System.Threading.Channels;
using Conveyor.Backends;
using Conveyor.Workflows;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor;

/// <summary>
/// The worker engine: fetches batches under leases, runs handlers with a concurrency limit,
/// extends leases by heartbeat and writes completions in batches.
/// </summary>
/// <remarks>
/// At-least-once checkpoints: a lease is held (and extended) from fetch until its completion is
/// written; a handler's outcome is written only after the handler returns; a worker that dies
/// leaves its leases to run out, after which the reaper requeues them (<see cref="LeaseRules"/>).
/// An attempt is spent when its handler starts: the start is recorded beside the handler, batched with the
/// completions (and left out when the attempt's completion goes in the same batch), or before the handler when
/// the lease says so (<see cref="Lease.RecordStartFirst"/>). A lease that is lost (the backend says so, or it passes
/// its local deadline without a successful extension) cancels its handler at once and its outcome is dropped.
/// </remarks>
internal sealed partial class WorkerService(
    IConveyorBackend backend,
    TaskRegistry registry,
    IServiceScopeFactory scopes,
    IOptions<ConveyorOptions> options,
    TimeProvider time,
    WorkerStatus status,
    ExecutionPipeline pipeline,
    TaskEventBus events,
    LimitGate limitGate,
    ConveyorMetrics metrics,
    IHostApplicationLifetime lifetime,
    ILogger<WorkerService> logger) : BackgroundService
{
    /// <summary>Longest the last hand-back of a drain may take (the backend may be down).</summary>
    private static readonly TimeSpan LeftoversDeadline = TimeSpan.FromSeconds(5);

    /// <summary>Longest the drain's end waits for the fetches the stop gave up on before it hands back what this worker
    /// holds: a fetch takes milliseconds, and one still running after this is left to the backend's own time limits.</summary>
    private static readonly TimeSpan AbandonedFetchWait = TimeSpan.FromSeconds(2);

    /// <summary>How long past the graceful timeout (<see cref="WorkerOptions.ShutdownTimeout"/>, counted from the stop) the
    /// stop may wait on the backend at most, whatever it does: a backend that does not answer is left to the clients' own
    /// time limits otherwise (Npgsql's 30 s command timeout, a Redis backlog), which added up to 20-35 s past the graceful
    /// timeout. Under the supervisor's margin (ConveyorSupervisor.StopMargin, 10 s), which kills a child later.</summary>
    internal static readonly TimeSpan StopBudgetMargin = TimeSpan.FromSeconds(7);

    private readonly WorkerOptions _options = options.Value.Worker;
    // The limits stage between fetch and start (docs/limits.md); null when no limit is set, so that it costs nothing.
    private LimitGate? _limits;
    // Keyed by lease, not task: a task whose lease was lost may come back to this worker under a new lease while the
    // old handler still winds down.
    private readonly ConcurrentDictionary<LeaseRef, InFlight> _inFlight = new();
    private readonly Channel<InFlight> _ready = Channel.CreateUnbounded<InFlight>(new UnboundedChannelOptions { SingleWriter = false });
    // Starts and outcomes to write, in the order they happened. Bounded, so that outcomes waiting to be written cannot
    // pile up without end when the backend writes slower than handlers finish: a full buffer holds the runners (and
    // with them the prefetch) until it drains.
    private readonly Channel<LeaseWrite> _writes = Channel.CreateBounded<LeaseWrite>(
        new BoundedChannelOptions((Math.Max(1, options.Value.Worker.CompletionBatchSize) * 2) + Math.Max(1, options.Value.Worker.Concurrency))
        { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
    private readonly ConcurrentQueue<InFlight> _unstarted = new();
    private readonly CancellationTokenSource _hardStop = new();
    // Cancelled StopBudgetMargin past the graceful timeout, counted from the stop: the stop's backend calls give up then.
    private readonly CancellationTokenSource _stopBudget = new();
    // When the stop began (a TimeProvider timestamp), 0 before.
    private long _stopStartedAt;
    private PrefetchGate? _slots;
    // Held by the fetch loop that gathers slots for its next fetch (TakeSlotsAsync).
    private readonly SemaphoreSlim _gathering = new(1, 1);
    private static readonly TimeSpan RefillWait = TimeSpan.FromMilliseconds(5);
    // Slots gathered for fetches in flight, until each lease is handed on (to _ready, the limits stage or back).
    private int _fetchingSlots;
    // Completed when a ready notification names one of this worker's queues (or any queue); replaced by each wake-up.
    private volatile TaskCompletionSource _readySignal = new(TaskCreationOptions.RunContinuationsAsynchronously);
    // Wake-ups so far (WakeFetchers), the last one a fetch loop took on (WaitForWorkAsync: it fetches for it, the other
    // loops woken by it wait on), and the last one every loop takes on (more work than one fetch took).
    private long _wakes;
    private long _wakeTaken;
    private long _wakeForAll = -1;
    // Whether the last fetch to return found nothing.
    private volatile bool _queuesRanDry;
    private HashSet<string> _queueNames = new(StringComparer.Ordinal);
    private volatile bool _draining;
    // Set as the stop begins, before the fetch loops have ended: a handler that frees its slot starts nothing more from
    // the buffer, which the drain hands back unspent. Otherwise the handlers went on taking leases from the buffer until
    // a fetch in flight returned (a recycled child ran 61 tasks at a limit of 40 under load).
    private volatile bool _stopping;
    // Shared by the fetch loops, so that an outage is logged once, not once per loop.
    private int _fetchFailing;
    // Set when a lease may be left held in the backend (a release, a start or an outcome it did not take): the end of the
    // drain then ends what this worker still holds (HandBackLeftoversAsync), as it always does in a supervised child.
    private volatile bool _leftBehind;
    // Fetches the stop did not wait for: one may still lease tasks to this worker after the stop (a statement runs on
    // without the token), so the drain's end waits for them before it hands back what this worker holds.
    private readonly ConcurrentQueue<Task> _abandonedFetches = new();

    private sealed class InFlight(Lease lease, long deadline)
    {
        private const int Waiting = 0;
        private const int Begun = 1;
        private const int Dropped = 2;
        private int _state;
        // Whether its start (written beside the handler) goes to the backend: the writer claims it, or the runner rules it
        // out for a handler that will not run (lost while the start waited for room in the writer's channel).
        private const int StartUndecided = 0;
        private const int StartClaimed = 1;
        private const int StartNotRun = 2;
        private int _startFate;

        public Lease Lease { get; } = lease;
        /// <summary>When the lease is taken to have run out (a <see cref="TimeProvider"/> timestamp), unless an extension
        /// succeeds first; a little before the backend's expiry, so that the handler stops before another worker can start.</summary>
        public long Deadline = deadline;
        /// <summary>When it was fetched (a <see cref="TimeProvider"/> timestamp).</summary>
        public long FetchedAt { get; init; }
        /// <summary>How long its handler ran; null when it never ran.</summary>
        public TimeSpan? Duration { get; set; }
        public CancellationTokenSource? Cancellation;
        public volatile bool CancelRequested;
        /// <summary>Set once the outcome is handed to the completion writer.</summary>
        public volatile bool Finished;
        /// <summary>The lease was lost while its handler ran: the handler is cancelled and its outcome dropped.</summary>
        public volatile bool Lost;
        /// <summary>Lost by this worker's own reckoning (its local deadline passed), not reported by the backend: the
        /// backend may still hold it.</summary>
        public volatile bool LostHere;
        /// <summary>Reported not held by the backend (an extension's or a start's answer), or its start could not be
        /// written before the worker gave up at its stop.</summary>
        public volatile bool LostByBackend;
        /// <summary>Put back unstarted by the limits stage: its completion raises no event, unless the store cancelled the
        /// task instead (its cancel was asked meanwhile).</summary>
        public bool PutBackByLimits { get; set; }

        /// <summary>A runner takes it; false when it was dropped while it waited.</summary>
        public bool TryBegin() => Interlocked.CompareExchange(ref _state, Begun, Waiting) == Waiting;

        /// <summary>Takes it away from the runners before it begins (handed back, or its lease lost); false once begun.</summary>
        public bool TryDrop() => Interlocked.CompareExchange(ref _state, Dropped, Waiting) == Waiting;

        public bool IsWaiting => Volatile.Read(ref _state) == Waiting;

        /// <summary>The writer takes the start to write it; false when the runner ruled it out first.</summary>
        public bool TryClaimStart() => Interlocked.CompareExchange(ref _startFate, StartClaimed, StartUndecided) != StartNotRun;

        /// <summary>The runner rules the start out (its handler will not run); false when the writer claimed it first.</summary>
        public bool TryRuleOutStart() => Interlocked.CompareExchange(ref _startFate, StartNotRun, StartUndecided) != StartClaimed;

        public bool IsDropped => Volatile.Read(ref _state) == Dropped;
    }

    /// <summary>A start to record, or an outcome to write. <see cref="Recorded"/> is set for a start the handler waits for.</summary>
    private readonly record struct LeaseWrite(InFlight? Start, Completion? Completion, TaskCompletionSource<bool>? Recorded);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // The host cancels this token on its own thread: the calls under way must not end there (DetachedCancellation).
        var hostStopping = stoppingToken;
        using var detached = DetachedCancellation.LinkTo(stoppingToken);
        stoppingToken = detached.Token;
        if (!options.Value.RunWorker)
        {
            return;
        }
        await Task.Yield();
        if (SpareTurn.IsSpare)
        {
            LogSpareWaiting(status.WorkerId);
            try
            {
                // Built, connected and started, but nothing fetched or held until the supervisor hands it a place.
                await SpareTurn.WaitAsync(stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                // Stopped before its turn: it held no lease (its exit code stays 0).
                return;
            }
        }
        if (ConveyorSupervisor.IsChildProcess)
        {
            // Until the end of the drain confirms that every lease went back: a child that ends before that (the host cut
            // the drain short, an exception) leaves the hand-back to its supervisor.
            Environment.ExitCode = WorkerExitCodes.LeasesNotHandedBack;
        }
        if (_options.MaxTasksPerChild is { } maxTasks)
        {
            // Before the first start: the recycler (another hosted service) may start after the first tasks have run.
            status.LimitStarts(maxTasks);
        }
        var concurrency = Math.Max(1, _options.Concurrency);
        _slots = new PrefetchGate(concurrency, _options.EffectivePrefetch, _options.Prefetch);
        var prefetch = _slots.Max;
        var queues = _options.ParseQueues();
        _limits = limitGate.IsEmpty ? null : limitGate;
        status.StartedAt = time.GetUtcNow();
        status.IsRunning = true;
        LogStarted(status.WorkerId, string.Join(",", queues.Select(q => q.Name)), concurrency,
            _options.Prefetch is { } fixedPrefetch ? fixedPrefetch.ToString(System.Globalization.CultureInfo.InvariantCulture) : $"automatic, {_slots.Size} to start, up to {prefetch}");

        if (ConveyorSupervisor.IsChildProcess && !SpareTurn.IsSpare)
        {
            // Its supervisor starts its spare once the first children are this far, not beside their start.
            ChildNotice.Send(status.WorkerId, ChildNoticeKind.Started);
        }
        _queueNames = new HashSet<string>(queues.Select(q => q.Name), StringComparer.Ordinal);
        // Subscribed beside the first fetch, not before it (issue 15, the worker's start-up): a subscription is a round
        // trip, and on some backends a connection of its own (PostgreSQL's LISTEN, RabbitMQ's consumer), that the first
        // fetch need not wait for. No ready notification is lost meanwhile: once the subscription is in place, the fetch
        // loops are woken and look again, so work made ready before it took effect is found then (SubscribeReadyAsync).
        var subscribing = SubscribeReadyAsync(stoppingToken);
        // On the host's token itself, not the detached one: handlers must see the stop as soon as it is asked (nothing
        // here blocks).
        using var stopStarting = hostStopping.Register(() =>
        {
            _stopping = true;
            BeginStop();
        });
        // The host stops its services one after another, this one among the last: the stop (its grace and its budget)
        // counts from when it was asked for, not from when the host came to this service.
        using var stopAsked = lifetime.ApplicationStopping.Register(BeginStop);
        var runners = new Task[concurrency];
        for (var i = 0; i < concurrency; i++)
        {
            runners[i] = Task.Run(RunLoopAsync, CancellationToken.None);
        }
        var writer = Task.Run(WriteLoopAsync, CancellationToken.None);
        using var heartbeatStop = new CancellationTokenSource();
        var heartbeat = Task.Run(() => HeartbeatLoopAsync(queues, concurrency, heartbeatStop.Token), CancellationToken.None);
        var leaseWatch = Task.Run(() => LeaseWatchLoopAsync(heartbeatStop.Token), CancellationToken.None);
        var limitReleases = _limits is { } gate ? Task.Run(() => gate.RunReleasesAsync(heartbeatStop.Token), CancellationToken.None) : Task.CompletedTask;
        var clockCheck = Task.Run(() => WarnOfClockSkewAsync(heartbeatStop.Token), CancellationToken.None);

        try
        {
            var fetchers = new Task[Math.Max(1, _options.FetchConcurrency)];
            for (var i = 0; i < fetchers.Length; i++)
            {
                fetchers[i] = FetchLoopAsync(queues, prefetch, stoppingToken);
            }
            await Task.WhenAll(fetchers).ConfigureAwait(false);
        }
        finally
        {
            await DrainAsync(runners).ConfigureAwait(false);
            _writes.Writer.TryComplete();
            if (!await WithinStopBudgetAsync(writer).ConfigureAwait(false))
            {
                // Outcomes or starts the backend did not take in time: their leases are handed back, or run out.
                _leftBehind = true;
                LogStopBudgetSpent("write outcomes");
            }
            // Not waited for: a call under way may end inside its callback, for as long as the client's own time limits
            // (DetachedCancellation); the loops are waited for within the stop's budget below.
            DetachedCancellation.Cancel(heartbeatStop);
            await WithinStopBudgetAsync(Task.WhenAll(heartbeat, leaseWatch, limitReleases, clockCheck)).ConfigureAwait(false);
            var handedBack = await HandBackLeftoversAsync().ConfigureAwait(false);
            if (_limits is not null)
            {
                try
                {
                    // Every lease of this worker ended: a slot still held (its release failed) is freed now, not at expiry.
                    await backend.Limits.ReleaseOwnerAsync(status.WorkerId, _stopBudget.Token).WaitAsync(_stopBudget.Token).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    handedBack = false;
                    LogBackendError(ex, "release concurrency slots");
                }
            }
            if (ConveyorSupervisor.IsChildProcess)
            {
                // 0 or 75 tell the supervisor that it has nothing to hand back (WorkerExitCodes.HandedBackItsLeases).
                Environment.ExitCode = WorkerExitCodes.ForChild(status.Recycling, handedBack);
            }
            try
            {
                await backend.Coordination.RemoveWorkerAsync(status.WorkerId, _stopBudget.Token).WaitAsync(_stopBudget.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                LogBackendError(ex, "remove worker");
            }
            if (await WithinStopBudgetAsync(subscribing).ConfigureAwait(false) && await subscribing.ConfigureAwait(false) is { } readySubscription)
            {
                await WithinStopBudgetAsync(readySubscription.DisposeAsync().AsTask()).ConfigureAwait(false);
            }
            status.IsRunning = false;
            LogStopped(status.WorkerId);
        }
    }

    private static readonly TimeSpan StartsLeftRecheck = TimeSpan.FromSeconds(1);

    private async Task FetchLoopAsync(IReadOnlyList<QueueWeight> queues, int prefetch, CancellationToken stoppingToken)
    {
        var slots = _slots!;
        var failures = 0;
        while (!stoppingToken.IsCancellationRequested)
        {
            int wanted;
            try
            {
                wanted = await TakeSlotsAsync(slots, prefetch, stoppingToken).ConfigureAwait(false);
                var startsLeft = status.StartsLeft();
                if (!startsLeft.IsCompleted)
                {
                    // At the recycler's count no attempt may start: leases fetched now would only go back. The slots wait
                    // free until a started attempt is given up (lost), whose place one more may take; looked at again
                    // every second too, so that a wake-up missed would not leave that place free for good.
                    ReturnSlots(slots, wanted);
                    try
                    {
                        await startsLeft.WaitAsync(StartsLeftRecheck, time, stoppingToken).ConfigureAwait(false);
                    }
                    catch (TimeoutException)
                    {
                        // Checked again at the top of the loop.
                    }
                    continue;
                }
            }
            catch (OperationCanceledException)
            {
                return;
            }
            IReadOnlyList<Lease> leases;
            // Nothing more ready after this fetch: it got none, or fewer than it asked for from an engine that says so.
            bool dry;
            // Taken before the fetch: a ready notification that arrives while it runs ends the wait below at once.
            var wake = _readySignal.Task;
            var fetchStart = System.Diagnostics.Stopwatch.GetTimestamp();
            var fetchStarted = time.GetTimestamp();
            Task<IReadOnlyList<Lease>>? fetch = null;
            try
            {
                fetch = backend.Queue.FetchAsync(new FetchRequest
                {
                    WorkerId = status.WorkerId,
                    // The backend weighs the queues (QueueOrder), or keeps their order when strict.
                    Queues = queues,
                    MaxCount = wanted,
                    LeaseDuration = _options.LeaseDuration,
                    StrictOrder = _options.StrictQueueOrder,
                }, stoppingToken);
                leases = await fetch.WaitAsync(stoppingToken).ConfigureAwait(false);
                var wasDry = _queuesRanDry;
                dry = leases.Count == 0 || (leases.Count < wanted && backend.Capabilities.ShortFetchMeansEmpty);
                _queuesRanDry = dry;
                if (wasDry && leases.Count == wanted)
                {
                    // Work after a dry spell, as much as was asked for: maybe more (a batch enqueued at once makes one
                    // notification, which one loop took on). Every loop joins in.
                    WakeFetchers(forAll: true);
                }
                metrics.BackendCall("fetch", fetchStart);
                if (failures > 0 && Interlocked.Exchange(ref _fetchFailing, 0) == 1)
                {
                    LogBackendRecovered();
                }
                failures = 0;
                status.BackendReachable = true;
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                // Not waited for: a backend that does not answer would hold up the drain (the client's own time limits,
                // not the token, end the call there). Had the fetch leased tasks after all, the drain's end waits for it
                // (within its deadline) and hands back whatever this worker holds.
                _leftBehind = true;
                if (fetch is not null)
                {
                    _abandonedFetches.Enqueue(ObserveFailure(fetch));
                }
                ReturnSlots(slots, wanted);
                return;
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                ReturnSlots(slots, wanted);
                if (failures++ == 0 && Interlocked.Exchange(ref _fetchFailing, 1) == 0)
                {
                    LogBackendError(ex, "fetch");
                }
                status.BackendReachable = false;
                try
                {
                    await Task.Delay(Backoff(failures), time, stoppingToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                continue;
            }
            if (leases.Count < wanted)
            {
                ReturnSlots(slots, wanted - leases.Count);
            }
            // A fetch that found work measures the round trip; one that waited for work would measure the wait, so a
            // fetch that got less than it asked for, or took longer than any round trip should, is not a sample.
            var fetchTime = System.Diagnostics.Stopwatch.GetElapsedTime(fetchStart);
            if (leases.Count > 0 && leases.Count == wanted && fetchTime < MaxRoundTripSample)
            {
                slots.RecordFetch(fetchTime);
            }
            var deadline = fetchStarted + LeaseLifetimeTicks;
            Admission[]? admissions = null;
            if (_limits is not null && leases.Count > 0)
            {
                admissions = await AdmitAsync(leases, stoppingToken).ConfigureAwait(false);
                if (admissions is null)
                {
                    ReturnSlots(slots, leases.Count);
                    continue;
                }
            }
            for (var i = 0; i < leases.Count; i++)
            {
                var lease = leases[i];
                var inFlight = new InFlight(lease, deadline) { FetchedAt = fetchStarted };
                _inFlight[lease.Ref] = inFlight;
                var admission = admissions?[i] ?? Admission.Run;
                switch (admission.Kind)
                {
                    case AdmissionKind.Hold:
                        _ = StartAtAsync(inFlight, admission.At);
                        break;
                    case AdmissionKind.PutBack:
                        await PutBackAsync(inFlight, admission).ConfigureAwait(false);
                        break;
                    default:
                        _ready.Writer.TryWrite(inFlight);
                        break;
                }
                Interlocked.Decrement(ref _fetchingSlots);
            }
            if (dry)
            {
                // Nothing ready: wait for a ready notification, or look again after FetchWait in case one was lost. One
                // that came while this fetch ran completed the wait taken before it, so that work is fetched at once.
                // (A fetch that got fewer than it asked for looks again at once where the engine does not say that
                // fewer means none left, BackendCapabilities.ShortFetchMeansEmpty: on PostgreSQL, SKIP LOCKED passes over
                // rows that other transactions hold.)
                try
                {
                    await WaitForWorkAsync(wake, stoppingToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    /// <summary>Waits for a ready notification after <paramref name="wake"/> was taken, or for FetchWait. Of the loops
    /// that one wake-up ends, one takes it on and fetches; the others wait on, since that fetch starts after the
    /// notification and finds its work (and a notification that came while a fetch ran completed the wait its loop took
    /// before it, so that loop fetches again). A notification to an idle worker so costs the fetch that finds the work
    /// (and on PostgreSQL the empty one after it), not also an empty one for each other fetch loop. A wake-up for all (a fetch found a
    /// full batch after the queues ran dry) ends every loop's wait, so that fetches overlap under load.</summary>
    private async Task WaitForWorkAsync(Task wake, CancellationToken stoppingToken)
    {
        while (true)
        {
            try
            {
                await wake.WaitAsync(_options.FetchWait, time, stoppingToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                return;
            }
            var latest = Interlocked.Read(ref _wakes);
            if (Interlocked.Read(ref _wakeForAll) == latest || Interlocked.Exchange(ref _wakeTaken, latest) != latest)
            {
                return;
            }
            // Another loop took on this wake-up (or a later one): its fetch starts after it.
            wake = _readySignal.Task;
        }
    }

    /// <summary>Gives back slots gathered for a fetch that got no lease for them (it failed, was cut short, found fewer, or
    /// the limits stage refused them): no longer counted as in flight, free for the next fetch.</summary>
    private void ReturnSlots(PrefetchGate slots, int count)
    {
        Interlocked.Add(ref _fetchingSlots, -count);
        slots.Release(count);
    }

    /// <summary>The slots the next fetch asks leases for: at least one, then every free one; and while the leases waiting
    /// to start (and those another fetch in flight asked for) still cover a fetch's round trip, more as handlers free
    /// them, up to the refill batch
    /// (<see cref="PrefetchGate.RefillBatch"/>). A fetch costs the engine about as much per statement as for a few
    /// hundred rows (PostgreSQL: 0.3 ms a statement, 0.04 ms a row), so a deep buffer is refilled by halves, not a slot
    /// at a time as each handler ends. One fetch loop gathers at a time (the others wait their turn), so that the loops
    /// do not split the freed slots between them; a gathered batch's fetch overlaps the next one's gathering.</summary>
    private async Task<int> TakeSlotsAsync(PrefetchGate slots, int prefetch, CancellationToken stoppingToken)
    {
        await _gathering.WaitAsync(stoppingToken).ConfigureAwait(false);
        var wanted = 0;
        try
        {
            await slots.WaitAsync(stoppingToken).ConfigureAwait(false);
            wanted = 1;
            while (wanted < prefetch && slots.TryTake())
            {
                wanted++;
            }
            var batch = Math.Min(prefetch, slots.RefillBatch);
            // Waiting leases above the batch cover the round trip of the fetch that refills it. Each wait ends when a
            // handler ends (and takes a waiting lease), or after a short while, to look again.
            while (wanted < batch && _ready.Reader.Count + Volatile.Read(ref _fetchingSlots) > batch)
            {
                if (await slots.WaitAsync(RefillWait, stoppingToken).ConfigureAwait(false))
                {
                    wanted++;
                    while (wanted < prefetch && slots.TryTake())
                    {
                        wanted++;
                    }
                }
            }
            // Counted before the next loop may gather: until then these slots are neither free nor waiting.
            Interlocked.Add(ref _fetchingSlots, wanted);
            return wanted;
        }
        catch (OperationCanceledException)
        {
            slots.Release(wanted);
            throw;
        }
        finally
        {
            _gathering.Release();
        }
    }

    /// <summary>The limits stage's decisions for a fetched batch; null when it failed (the leases are handed back, unstarted,
    /// and the fetch loop backs off as after a failed fetch).</summary>
    private async Task<Admission[]?> AdmitAsync(IReadOnlyList<Lease> leases, CancellationToken stoppingToken)
    {
        try
        {
            // Not waited for past the stop: a call under way ends only by the client's own time limits then.
            return await _limits!.AdmitAsync(leases, stoppingToken).WaitAsync(stoppingToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            if (!stoppingToken.IsCancellationRequested)
            {
                LogBackendError(ex, "limits");
            }
            try
            {
                // Bounded: the fetch loop waits here, and the stop waits for the fetch loops.
                var sweep = await backend.Queue.ReleaseAsync(leases.Select(l => l.Ref).ToArray(), CancellationToken.None).WaitAsync(LeftoversDeadline, CancellationToken.None).ConfigureAwait(false);
                await RaiseHandBackEndsAsync(sweep, stoppingToken).ConfigureAwait(false);
            }
            catch (Exception releaseError) when (releaseError is not OutOfMemoryException)
            {
                // Their leases run out and they come back, unstarted and unspent.
                _leftBehind = true;
                LogBackendError(releaseError, "release");
            }
            if (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    await Task.Delay(Backoff(1), time, stoppingToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                }
            }
            return null;
        }
    }

    /// <summary>Hands a lease to the runners at <paramref name="at"/> (a rate limit's start time within the hold horizon);
    /// meanwhile it holds a prefetch slot, not a handler.</summary>
    private async Task StartAtAsync(InFlight inFlight, DateTimeOffset at)
    {
        var wait = at - time.GetUtcNow();
        if (wait > TimeSpan.Zero)
        {
            await Task.Delay(wait, time).ConfigureAwait(false);
        }
        // Past the drain the runners take nothing more: it goes back unstarted with the others.
        if (!_ready.Writer.TryWrite(inFlight) && inFlight.TryDrop())
        {
            _unstarted.Enqueue(inFlight);
        }
    }

    /// <summary>Puts a lease back unstarted, its attempt unspent, to come back at the limits stage's time: settled as an
    /// unstarted retry, written with the completions.</summary>
    private async Task PutBackAsync(InFlight inFlight, Admission admission)
    {
        inFlight.TryBegin();
        inFlight.PutBackByLimits = true;
        inFlight.Finished = true;
        var lease = inFlight.Lease;
        var completion = new Completion
        {
            Lease = lease.Ref,
            Kind = CompletionKind.Retry,
            Attempt = lease.Attempt,
            Unstarted = true,
            RetryAt = admission.At,
            Headers = admission.Headers,
            At = time.GetUtcNow(),
        };
        try
        {
            await _writes.Writer.WriteAsync(new LeaseWrite(null, completion, null)).ConfigureAwait(false);
        }
        catch (ChannelClosedException)
        {
            // Past the shutdown grace: its lease runs out and it comes back unstarted.
        }
        _slots!.Release();
    }

    private void OnReady(Notification notification)
    {
        if (notification.Missed || notification.Payload.Length == 0 || _queueNames.Contains(notification.Payload))
        {
            WakeFetchers();
        }
    }

    /// <summary>Ends the fetch loops' wait for work: they fetch again at once.</summary>
    private void WakeFetchers(bool forAll = false)
    {
        var wake = Interlocked.Increment(ref _wakes);
        if (forAll)
        {
            Interlocked.Exchange(ref _wakeForAll, wake);
        }
        Interlocked.Exchange(ref _readySignal, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    }

    /// <summary>Subscribes to ready notifications while the first fetches run; null when it failed or the worker stopped
    /// first. A notification sent before the subscription took effect is not delivered: the fetch loops are woken once it
    /// is in place, so a loop that found nothing and waits looks again and finds that work.</summary>
    private async Task<IAsyncDisposable?> SubscribeReadyAsync(CancellationToken stoppingToken)
    {
        try
        {
            var subscription = await backend.Notifier.SubscribeAsync(NotifierChannels.Ready, OnReady, stoppingToken).ConfigureAwait(false);
            WakeFetchers();
            return subscription;
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            return null;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Without notifications the worker still finds work, by its fallback poll every FetchWait.
            LogBackendError(ex, "subscribe to ready notifications");
            return null;
        }
    }

    private static readonly string WorkerVersion =
        typeof(WorkerService).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion ?? "unknown";

    /// <summary>Longer than a fetch's round trip to a healthy backend takes; a fetch this long waited for work.</summary>
    private static readonly TimeSpan MaxRoundTripSample = TimeSpan.FromMilliseconds(250);

    private static TimeSpan Backoff(int failures) =>
        TimeSpan.FromMilliseconds(Math.Min(5000, 100 * Math.Pow(2, Math.Min(failures, 10))) * (0.8 + Random.Shared.NextDouble() * 0.4));

    private async Task RunLoopAsync()
    {
        var reader = _ready.Reader;
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            var refusedAtCount = false;
            while (reader.TryRead(out var inFlight))
            {
                // Stopping, or at the recycler's count (WorkerStatus.TryStart): it goes back unstarted.
                if (_stopping || !status.TryStart())
                {
                    if (inFlight.TryDrop())
                    {
                        _unstarted.Enqueue(inFlight);
                        refusedAtCount |= !_stopping;
                    }
                    continue;
                }
                if (refusedAtCount)
                {
                    // A place at the count came free (a lost attempt): those refused before go back before this
                    // handler runs, not after. Before it begins, so that a lease lost during the hand-back is still
                    // dropped unstarted (TryDrop), not begun and its start recorded.
                    refusedAtCount = false;
                    await ReleaseUnstartedAsync().ConfigureAwait(false);
                    if (_stopping)
                    {
                        // Stopping began meanwhile: it goes back unstarted with the others, its start reserved no more.
                        status.Dropped();
                        if (inFlight.TryDrop())
                        {
                            _unstarted.Enqueue(inFlight);
                        }
                        continue;
                    }
                }
                if (inFlight.TryBegin())
                {
                    await RunOneAsync(inFlight).ConfigureAwait(false);
                }
                else
                {
                    // Taken from it meanwhile (cancelled, lost): it neither runs nor counts.
                    status.Dropped();
                }
            }
            if (refusedAtCount)
            {
                // Back at once, not in the drain: held until then, the heartbeat would extend them, and if a started
                // attempt were then lost (its place given back), no other could start and the count never be reached.
                // Their prefetch slots stay taken, so that the fetcher does not fetch them only to have them refused again.
                await ReleaseUnstartedAsync().ConfigureAwait(false);
            }
        }
    }

    private async Task RunOneAsync(InFlight inFlight)
    {
        var lease = inFlight.Lease;
        var message = lease.Message;
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        Completion completion;
        if (inFlight.CancelRequested)
        {
            // Cancelled while it waited in the prefetch buffer: it never starts.
            completion = new Completion { Lease = lease.Ref, Kind = CompletionKind.Cancelled, Attempt = lease.Attempt, At = time.GetUtcNow() };
        }
        else if (message.ExpiresAt is { } expiresAt && expiresAt <= time.GetUtcNow())
        {
            completion = new Completion { Lease = lease.Ref, Kind = CompletionKind.Expired, Attempt = lease.Attempt, At = time.GetUtcNow() };
        }
        else if (!registry.TryGet(message.Task, out var descriptor))
        {
            // Another worker (say, a newer version in a rolling deploy) may know it: it waits, its attempts unspent and
            // never dead-lettered for it, and is offered again later.
            var now = time.GetUtcNow();
            completion = new Completion
            {
                Lease = lease.Ref,
                Kind = CompletionKind.Retry,
                Attempt = lease.Attempt,
                Unstarted = true,
                RetryAt = now + NoHandlerWait * (0.8 + (Random.Shared.NextDouble() * 0.4)),
                Error = new TaskError(NoHandlerErrorType,
                    $"No handler for task '{message.Task}' on worker {status.WorkerId}: it waits for a worker that declares it (its attempts are not spent)."),
                At = now,
            };
        }
        else if (await RecordStartAsync(inFlight).ConfigureAwait(false) is var start && start != StartRecord.Started)
        {
            // Lost before it started (taken back by the reaper, settled elsewhere, or past its local deadline while the
            // backend could not be reached): it must not run here. Forgotten first, so that a give-back below finds
            // nothing of it left here to settle (its slot, its limits).
            DropLost(inFlight, ran: false);
            if (start == StartRecord.RecordedThenLostHere)
            {
                await GiveBackUnrunAsync(inFlight).ConfigureAwait(false);
            }
            return;
        }
        else
        {
            // The handler's token source, published with a full fence before the loss is read (MarkLost fences between
            // setting the loss and reading the source): a loss from here on cancels the handler; one before it stops the
            // invocation, before any event says that the attempt started.
            using var cancellation = CancellationTokenSource.CreateLinkedTokenSource(_hardStop.Token);
            Interlocked.Exchange(ref inFlight.Cancellation, cancellation);
            if (inFlight.Lost)
            {
                inFlight.Cancellation = null;
                await SettleUnrunAsync(inFlight).ConfigureAwait(false);
                return;
            }
            if (!events.HasSubscribers)
            {
                // Only the metrics, if anything, listen: counted without building an event.
                if (metrics.Enabled)
                {
                    metrics.Started(message.Task, message.Queue, time.GetUtcNow() - ReadyAt(message));
                }
            }
            else
            {
                var (workflowId, stepId) = Workflows.WorkflowHeaders.StepOf(message);
                events.Publish(new TaskEvent
                {
                    WorkflowId = workflowId,
                    StepId = stepId,
                    Kind = TaskEventKind.Started,
                    State = TaskState.Running,
                    TaskId = message.Id,
                    Task = message.Task,
                    Queue = message.Queue,
                    Attempt = lease.Attempt,
                    At = time.GetUtcNow(),
                    WorkerId = status.WorkerId,
                    Origin = status.WorkerId,
                    QueueWait = time.GetUtcNow() - ReadyAt(message),
                });
            }
            status.HandlerStarted(lease, time.GetUtcNow());
            Completion? outcome;
            try
            {
                outcome = await InvokeAsync(lease, inFlight, descriptor, cancellation).ConfigureAwait(false);
            }
            finally
            {
                status.HandlerEnded(lease);
            }
            if (outcome is null)
            {
                // Stopped by the shutdown past its grace: an interrupted attempt, as a handler's that ignores the
                // cancellation is. No outcome is written; the lease stays held until the end of the drain hands it back
                // (HandBackLeftoversAsync), and its task is redelivered by the lease rules (LeaseRules), whatever its
                // maxAttempts, rather than failed by its retry policy (dead at its last attempt).
                _leftBehind = true;
                DropLost(inFlight, ran: false);
                return;
            }
            completion = outcome;
            inFlight.Duration = System.Diagnostics.Stopwatch.GetElapsedTime(started);
            // Only handlers that ran size the prefetch: a lease settled without running (cancelled, expired) says
            // nothing about how long tasks take.
            _slots!.RecordHandler(started);
        }
        if (inFlight.Lost)
        {
            // Another worker may hold the task now: this outcome must not be written.
            DropLost(inFlight, ran: true);
            return;
        }
        // A snooze (a retry that spends no attempt) is not a failure.
        status.Finished(completion.Kind == CompletionKind.Succeeded || completion.Unstarted);
        inFlight.Finished = true;
        try
        {
            await _writes.Writer.WriteAsync(new LeaseWrite(null, completion, null)).ConfigureAwait(false);
        }
        catch (ChannelClosedException)
        {
            // Past the shutdown grace the completion writer has given up: the lease runs out and the task is redelivered.
        }
        _slots!.Release();
    }

    /// <summary>When a message became ready: its ETA or retry time, else its enqueue.</summary>
    private static DateTimeOffset ReadyAt(TaskMessage message) =>
        message.NotBefore is { } notBefore && notBefore > message.CreatedAt ? notBefore : message.CreatedAt;

    /// <summary>The error type of a task a worker took but has no handler for.</summary>
    internal const string NoHandlerErrorType = "Conveyor.NoHandler";

    /// <summary>How long a task that this worker has no handler for waits before it is offered again (±20 %).</summary>
    private static readonly TimeSpan NoHandlerWait = TimeSpan.FromSeconds(15);

    /// <summary>What <see cref="RecordStartAsync"/> found.</summary>
    private enum StartRecord
    {
        /// <summary>The handler may run: its start is recorded, or on its way beside it.</summary>
        Started,
        /// <summary>The lease is no longer held here (the backend says so, or it was lost before the start was asked for).</summary>
        Lost,
        /// <summary>The backend recorded the start under this worker's lease, but meanwhile the lease passed its local
        /// deadline here: the backend may still hold it, started, for a handler that will not run.</summary>
        RecordedThenLostHere,
    }

    /// <summary>Records the attempt's start: beside the handler (batched with completions), or before it when the lease
    /// asks (<see cref="Lease.RecordStartFirst"/>).</summary>
    private async Task<StartRecord> RecordStartAsync(InFlight inFlight)
    {
        if (!inFlight.Lease.RecordStartFirst)
        {
            if (inFlight.Lost)
            {
                // Lost since it began, before its handler ran: no start is recorded for a handler that does not run.
                return StartRecord.Lost;
            }
            if (!_writes.Writer.TryWrite(new LeaseWrite(inFlight, null, null)))
            {
                try
                {
                    // The channel is full while the backend is slow or out of reach: the lease may pass its deadline here.
                    await _writes.Writer.WriteAsync(new LeaseWrite(inFlight, null, null)).ConfigureAwait(false);
                }
                catch (ChannelClosedException)
                {
                    // Past the shutdown grace, with no start on its way: the handler does not run. Left behind, so that
                    // the stop hands the lease back (unstarted) instead of leaving it to run out.
                    _leftBehind = true;
                    return StartRecord.Lost;
                }
            }
            // A loss from here on, before the handler is invoked, is settled by RunOneAsync (SettleUnrunAsync).
            return StartRecord.Started;
        }
        var recorded = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        try
        {
            await _writes.Writer.WriteAsync(new LeaseWrite(inFlight, null, recorded)).ConfigureAwait(false);
        }
        catch (ChannelClosedException)
        {
            // As above: the stop hands the lease back.
            _leftBehind = true;
            return StartRecord.Lost;
        }
        await recorded.Task.ConfigureAwait(false);
        if (!inFlight.Lost)
        {
            return StartRecord.Started;
        }
        // The writer answers false for a lease lost by then, whichever way: only one lost here and not reported by the
        // backend when its start was written was recorded under a lease the backend may still hold.
        return inFlight.LostHere && !inFlight.LostByBackend ? StartRecord.RecordedThenLostHere : StartRecord.Lost;
    }

    /// <summary>A lease lost after its start was recorded or sent, before its handler was invoked: forgotten, its start
    /// ruled out if the writer has not taken it, else its attempt given back as for a start recorded first.</summary>
    private async Task SettleUnrunAsync(InFlight inFlight)
    {
        var recorded = inFlight.Lease.RecordStartFirst || !inFlight.TryRuleOutStart();
        DropLost(inFlight, ran: false);
        if (recorded && inFlight.LostHere && !inFlight.LostByBackend)
        {
            await GiveBackUnrunAsync(inFlight).ConfigureAwait(false);
        }
    }

    /// <summary>For a lease whose start the backend recorded (<see cref="Lease.RecordStartFirst"/>, or a start beside the
    /// handler that the writer took before the loss) but which passed its
    /// local deadline here before its handler ran: a retry that spends no attempt (due at once), which the backend takes
    /// only while this worker still holds the lease (a lease it took back refuses it, as it does any outcome). Left so,
    /// the lease would run out as an interrupted attempt for a handler that never ran.</summary>
    private async Task GiveBackUnrunAsync(InFlight inFlight)
    {
        var lease = inFlight.Lease;
        var now = time.GetUtcNow();
        var completion = new Completion
        {
            Lease = lease.Ref,
            Kind = CompletionKind.Retry,
            Attempt = lease.Attempt,
            Unstarted = true,
            RetryAt = now,
            Error = new TaskError(LeaseLostUnrunErrorType,
                $"The lease on worker {status.WorkerId} was lost before the handler started (not extended in time); the attempt is not spent."),
            At = now,
        };
        try
        {
            await _writes.Writer.WriteAsync(new LeaseWrite(null, completion, null)).ConfigureAwait(false);
        }
        catch (ChannelClosedException)
        {
            // Past the shutdown grace: the lease runs out and the reaper settles it.
        }
    }

    /// <summary>The error type of a retry written for a lease lost before its handler started (<see cref="GiveBackUnrunAsync"/>).</summary>
    internal const string LeaseLostUnrunErrorType = "Conveyor.LeaseLostBeforeStart";

    /// <summary>Forgets a lease that was lost: its outcome (if it ran) is not written, and its slot is free again.</summary>
    private void DropLost(InFlight inFlight, bool ran)
    {
        if (ran)
        {
            LogOutcomeDropped(inFlight.Lease.Message.Id);
        }
        status.Dropped();
        _inFlight.TryRemove(inFlight.Lease.Ref, out _);
        _limits?.Ended(inFlight.Lease.Ref);
        _slots!.Release();
    }

    /// <summary>Runs the handler with <paramref name="cancellation"/>, the token source published on its lease. Null when
    /// the shutdown cancelled it past its grace: an interrupted attempt, whose lease the drain hands back.</summary>
    private async Task<Completion?> InvokeAsync(Lease lease, InFlight inFlight, TaskDescriptor descriptor, CancellationTokenSource cancellation)
    {
        var message = lease.Message;
        CancellationTokenRegistration softLimit = default;
        if ((message.Timeout ?? _options.SoftTimeLimit) is { } timeout)
        {
            // Logged as the limit cancels the token: a handler that honours it ends at once, before a periodic look
            // (the watchdog's) could see it running past the limit. A loss, a cancel or the hard stop sets its flag
            // before it cancels, and is not logged as the limit.
            softLimit = RegisterSoftLimit(cancellation, inFlight, lease, timeout);
            cancellation.CancelAfter(timeout);
        }
        if (inFlight.CancelRequested)
        {
            await cancellation.CancelAsync().ConfigureAwait(false);
        }
        var scope = scopes.CreateAsyncScope();
        try
        {
            string? result;
            if (pipeline.IsEmpty)
            {
                var context = new TaskContext(message, lease.Attempt, lease.IsRedelivery);
                result = await descriptor.InvokeAsync(scope.ServiceProvider, context, message.Args, cancellation.Token).ConfigureAwait(false);
            }
            else
            {
                var context = new TaskExecutionContext(message, lease.Attempt, lease.IsRedelivery, status.WorkerId, scope.ServiceProvider, cancellation.Token);
                await pipeline.RunAsync(context).ConfigureAwait(false);
                result = context.Result;
            }
            return new Completion
            {
                Lease = lease.Ref,
                Kind = CompletionKind.Succeeded,
                Attempt = lease.Attempt,
                Result = result,
                At = time.GetUtcNow(),
                WorkflowStep = lease.Message.Headers?.ContainsKey(WorkflowHeaders.Workflow) == true,
            };
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
            if (inFlight.CancelRequested)
            {
                return new Completion { Lease = lease.Ref, Kind = CompletionKind.Cancelled, Attempt = lease.Attempt, At = time.GetUtcNow() };
            }
            if (_hardStop.IsCancellationRequested)
            {
                // Interrupted after the grace period: not the handler's failure, and not its retry policy's to judge. The
                // attempt counts, and the task comes back as an interrupted attempt (LeaseRules) once the drain hands
                // its lease back.
                return null;
            }
            // A time limit counts as a TimeoutException for the policy's exception lists.
            return AttemptOutcomes.ByPolicy(lease, new TaskError(typeof(TimeoutException).FullName!, $"The attempt exceeded its time limit of {message.Timeout ?? _options.SoftTimeLimit}."),
                typeof(TimeoutException), time.GetUtcNow());
        }
        catch (SnoozeTaskException ex)
        {
            return await PutBackAsync(lease, descriptor, ex.Delay).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Logged by the logging middleware (TaskLoggingMiddleware), with the rest of the attempt's lines. Retried, or
            // dead, by the task's policy; RetryTaskException and PermanentTaskException decide for themselves.
            return AttemptOutcomes.Failed(lease, ex, time.GetUtcNow());
        }
        finally
        {
            inFlight.Cancellation = null;
            softLimit.Dispose();
            await scope.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>A snooze: counts the snoozes in a row from the task's history (one store read, only when a handler
    /// snoozes) and settles the attempt unspent, or dead past the task's limit.</summary>
    private async Task<Completion> PutBackAsync(Lease lease, TaskDescriptor descriptor, TimeSpan delay)
    {
        var snoozed = 0;
        try
        {
            snoozed = AttemptOutcomes.TrailingSnoozes(await backend.Store.GetAsync(lease.Message.Id, _hardStop.Token).ConfigureAwait(false));
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Counted at the next snooze instead: an outage must not turn a snooze into a failure.
            LogBackendError(ex, "count snoozes");
        }
        return AttemptOutcomes.Snoozed(lease, delay, snoozed, descriptor.Defaults.MaxSnoozes ?? _options.MaxSnoozes, lease.Message.Task, time.GetUtcNow());
    }

    /// <summary>How long a start that no one waits for is held back, at most, in the hope that its attempt's completion
    /// comes first and makes it needless: a no-op task's start is then never written.</summary>
    private static readonly TimeSpan StartHold = TimeSpan.FromMilliseconds(20);

    private async Task WriteLoopAsync()
    {
        var reader = _writes.Reader;
        var max = Math.Max(1, _options.CompletionBatchSize);
        // Starts read in this cycle wait for the next one (or StartHold, when nothing else comes): most attempts of short
        // tasks complete meanwhile, and their starts are dropped instead of written. Starts a handler waits for
        // (RecordStartFirst) are written at once.
        var fresh = new List<LeaseWrite>();
        var held = new List<LeaseWrite>();
        var due = new List<LeaseWrite>();
        var completions = new List<Completion>(max);
        var completed = new HashSet<LeaseRef>();
        // Writes that arrive while a call is in flight form the next batch: batching costs no added latency.
        while (true)
        {
            if (!reader.TryPeek(out _))
            {
                if (held.Count == 0)
                {
                    if (!await reader.WaitToReadAsync().ConfigureAwait(false))
                    {
                        break;
                    }
                }
                else
                {
                    // Real time, not the injected clock: the hold trades write volume for a few milliseconds, whatever the clock says.
                    using var hold = new CancellationTokenSource(StartHold);
                    try
                    {
                        if (!await reader.WaitToReadAsync(hold.Token).ConfigureAwait(false))
                        {
                            break;
                        }
                    }
                    catch (OperationCanceledException) when (hold.IsCancellationRequested)
                    {
                        // Nothing came within the hold: the held starts are written now.
                    }
                }
            }
            while (completions.Count < max && fresh.Count < max && reader.TryRead(out var write))
            {
                if (write.Completion is { } completion)
                {
                    completions.Add(completion);
                    completed.Add(completion.Lease);
                }
                else if (write.Recorded is not null)
                {
                    due.Add(write);
                }
                else
                {
                    fresh.Add(write);
                }
            }
            due.AddRange(held);
            held.Clear();
            foreach (var start in fresh)
            {
                if (!completed.Contains(start.Start!.Lease.Ref))
                {
                    held.Add(start);
                }
            }
            fresh.Clear();
            if (due.Count > 0)
            {
                await WriteStartsAsync(due, completed).ConfigureAwait(false);
            }
            if (completions.Count > 0)
            {
                await WriteCompletionsAsync(completions).ConfigureAwait(false);
            }
            due.Clear();
            completions.Clear();
            completed.Clear();
        }
        if (held.Count > 0)
        {
            // Shutting down: starts of attempts that never completed here (lost, or cut off) are still recorded.
            await WriteStartsAsync(held, completed).ConfigureAwait(false);
        }
    }

    /// <summary>Records starts, before the completions of the same batch. A start whose attempt's completion is in the
    /// batch is left out: the completion settles the attempt, started or not (what a no-op task does at full speed).</summary>
    private async Task WriteStartsAsync(List<LeaseWrite> starts, HashSet<LeaseRef> completed)
    {
        var refs = new List<LeaseRef>(starts.Count);
        foreach (var start in starts)
        {
            // A start ruled out by its runner (lost before its handler ran) is not written: the backend would count an
            // interrupted attempt for it.
            if (!completed.Contains(start.Start!.Lease.Ref) && start.Start.TryClaimStart())
            {
                refs.Add(start.Start.Lease.Ref);
            }
        }
        IReadOnlyList<LeaseRef> lost = [];
        if (refs.Count > 0)
        {
            var failures = 0;
            while (true)
            {
                try
                {
                    lost = await backend.Queue.StartAsync(refs, CancellationToken.None).ConfigureAwait(false);
                    break;
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    if (failures++ == 0)
                    {
                        LogBackendError(ex, "start");
                    }
                    status.BackendReachable = false;
                    if (_hardStop.IsCancellationRequested && failures > 5)
                    {
                        // Shutting down and the backend is gone: unrecorded starts come back as unstarted leases.
                        _leftBehind = true;
                        lost = refs;
                        break;
                    }
                    await Task.Delay(Backoff(failures), time).ConfigureAwait(false);
                }
            }
        }
        var lostRefs = lost.Count == 0 ? null : lost.ToHashSet();
        foreach (var start in starts)
        {
            var inFlight = start.Start!;
            if (lostRefs is not null && lostRefs.Contains(inFlight.Lease.Ref))
            {
                inFlight.LostByBackend = true;
                MarkLost(inFlight);
            }
            start.Recorded?.TrySetResult(!inFlight.Lost);
        }
    }

    private async Task WriteCompletionsAsync(List<Completion> batch)
    {
        var failures = 0;
        var written = false;
        var overrides = CompletionOverride.None;
        while (true)
        {
            try
            {
                var started = System.Diagnostics.Stopwatch.GetTimestamp();
                overrides = await backend.Queue.CompleteAsync(batch, CancellationToken.None).ConfigureAwait(false);
                metrics.BackendCall("complete", started);
                written = true;
                break;
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                if (failures++ == 0)
                {
                    LogBackendError(ex, "complete");
                }
                status.BackendReachable = false;
                if (_hardStop.IsCancellationRequested && failures > 5)
                {
                    // Shutting down and the backend is gone: these leases run out and are redelivered.
                    _leftBehind = true;
                    break;
                }
                // Leases stay held and heartbeated while we retry; past the lease they are redelivered anyway.
                await Task.Delay(Backoff(failures), time).ConfigureAwait(false);
            }
        }
        // A batch left behind raises nothing: its leases run out and their tasks run again (unless one of the failed calls
        // stored it after all, whose events are then lost: a stop during an outage). One written after failed calls raises
        // its events as one written at once does.
        var observed = events.IsObserved && written;
        // Written again after a failed call, which may have been stored (a timeout after the write, a connection lost after
        // the commit): the backend then finds these leases settled and ignores them, as it does leases lost meanwhile (an
        // outage longer than a lease). The store tells the two apart.
        var rewritten = written && failures > 0;
        // Nearly always empty: then no lookup is built.
        var settledOtherwise = overrides.Count == 0 ? null : SettledOtherwise(overrides, rewritten);
        if (rewritten && observed && settledOtherwise is not null)
        {
            await ReadBackIgnoredAsync(batch, settledOtherwise).ConfigureAwait(false);
        }
        foreach (var completion in batch)
        {
            if (!_inFlight.TryRemove(completion.Lease, out var inFlight))
            {
                continue;
            }
            _limits?.Ended(completion.Lease);
            if (!observed)
            {
                continue;
            }
            TaskState? state = null;
            if (settledOtherwise is not null && settledOtherwise.TryGetValue(completion.Lease, out state) && state is null)
            {
                // Ignored (its lease no longer held): nothing happened to the task, so no event and no metric.
                continue;
            }
            // A put-back by the limits stage raises nothing (the task did not run), unless the store cancelled it (its
            // cancel was asked meanwhile): that ends the task.
            if (!inFlight.PutBackByLimits || state == TaskState.Cancelled)
            {
                PublishOutcome(completion, inFlight, state);
            }
        }
    }

    /// <summary>For a batch written again after a failed call: each completion the backend ignored is looked up in the store.
    /// One that the first call stored is raised as stored; one whose lease was lost meanwhile stays ignored. Where the
    /// store cannot be read either, it is raised as asked: what the worker asked is then the best it knows.</summary>
    private async Task ReadBackIgnoredAsync(List<Completion> batch, Dictionary<LeaseRef, TaskState?> settledOtherwise)
    {
        foreach (var completion in batch)
        {
            if (!settledOtherwise.TryGetValue(completion.Lease, out var state) || state is not null)
            {
                continue;
            }
            TaskRecord? record;
            try
            {
                record = await backend.Store.GetAsync(completion.Lease.TaskId, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                settledOtherwise.Remove(completion.Lease);
                continue;
            }
            // An unstarted retry gave its attempt back.
            var attempts = completion.Attempt - (completion.Unstarted && completion.Kind == CompletionKind.Retry ? 1 : 0);
            // Stored by the first call: the record is this worker's, at this attempt, in a state this completion leaves (a
            // retry may have been cancelled or held back instead). Anything else (another attempt holds or ended it, or the
            // lost lease sent it back to its queue): it was never stored, and stays ignored. A retry queued again since its
            // write is taken for that too, a rare event lost rather than a false one raised.
            var asked = completion.Kind.StateAfter();
            if (record is null || record.WorkerId != status.WorkerId || record.Attempts != attempts
                || !(record.State == asked || (completion.Kind == CompletionKind.Retry && record.State is TaskState.Cancelled or TaskState.Pending)))
            {
                continue;
            }
            if (record.State == asked)
            {
                settledOtherwise.Remove(completion.Lease);
            }
            else
            {
                settledOtherwise[completion.Lease] = record.State;
            }
        }
    }

    /// <summary>The states the backend gave the completions it did not settle as asked (null: ignored), by lease.</summary>
    private Dictionary<LeaseRef, TaskState?> SettledOtherwise(IReadOnlyList<CompletionOverride> overrides, bool rewritten)
    {
        var settled = new Dictionary<LeaseRef, TaskState?>(overrides.Count);
        foreach (var o in overrides)
        {
            // A state given outranks an ignored answer for the same lease (one named twice).
            if (o.State is not null || !settled.ContainsKey(o.Lease))
            {
                settled[o.Lease] = o.State;
            }
            if (o.IsIgnored && rewritten)
            {
                LogCompletionIgnoredOnRewrite(o.Lease.TaskId, o.Lease.Token);
            }
            else if (o.IsIgnored)
            {
                LogCompletionIgnored(o.Lease.TaskId, o.Lease.Token);
            }
        }
        return settled;
    }

    /// <summary>A lease this worker no longer holds: a running handler is cancelled (its outcome is dropped when it
    /// returns); one that has not begun never will.</summary>
    private void MarkLost(InFlight inFlight)
    {
        if (inFlight.Finished)
        {
            // Its outcome was handed over: the write settles it, or is ignored if another worker holds it now.
            return;
        }
        if (inFlight.TryDrop())
        {
            _inFlight.TryRemove(inFlight.Lease.Ref, out _);
            _limits?.Ended(inFlight.Lease.Ref);
            _slots!.Release();
            return;
        }
        if (inFlight.IsDropped)
        {
            // Handed back unstarted (after this heartbeat took its snapshot): no handler to stop, nothing lost.
            return;
        }
        if (!inFlight.Lost)
        {
            inFlight.Lost = true;
            Interlocked.MemoryBarrier();
            LogLeaseLost(inFlight.Lease.Message.Id);
            // The handler has just returned if its source is gone; its outcome is dropped all the same.
            CancelHandler(inFlight);
        }
    }

    /// <summary>Raises the event of an outcome whose completion was written, and that the backend settled in
    /// <paramref name="state"/> (null: as asked).</summary>
    private void PublishOutcome(Completion completion, InFlight inFlight, TaskState? state)
    {
        var message = inFlight.Lease.Message;
        if (!events.HasSubscribers)
        {
            // Only the metrics listen: recorded without building an event.
            var kind = state is { } settled ? CompletionKinds.EventKindOf(settled) : completion.Kind.EventKind();
            metrics.Ended(kind, message.Task, message.Queue, inFlight.Duration, completion.Error is not null);
            return;
        }
        events.Publish(TaskEvent.OfOutcome(message, completion, status.WorkerId, inFlight.Duration, state));
    }

    /// <summary>Logs the soft limit as it cancels the attempt's token. A method of its own: a lambda in
    /// <see cref="InvokeAsync"/> would capture its parameters there, a closure allocated for every attempt, limit or not.</summary>
    private CancellationTokenRegistration RegisterSoftLimit(CancellationTokenSource cancellation, InFlight inFlight, Lease lease, TimeSpan timeout) =>
        cancellation.Token.Register(() =>
        {
            if (!inFlight.Lost && !inFlight.CancelRequested && !_hardStop.IsCancellationRequested)
            {
                LogSoftLimit(lease.Message.Id, lease.Message.Task, lease.Attempt, timeout);
            }
        });

    /// <summary>Leases, ETAs and retry times are written with each process's clock (docs/architecture.md): a worker whose
    /// clock is off its engine's by more than <see cref="BackendHealth.SkewWarning"/> says so in its own log once, at
    /// start, as a server's <c>/health/ready</c> does. An engine that does not answer is the other loops' to report.</summary>
    private async Task WarnOfClockSkewAsync(CancellationToken stop)
    {
        try
        {
            // After a heartbeat's interval: not a round trip beside the first fetches, which a worker's start-up waits for.
            await Task.Delay(_options.HeartbeatInterval, time, stop).ConfigureAwait(false);
            var health = await backend.CheckHealthAsync(stop).WaitAsync(stop).ConfigureAwait(false);
            if (health.ClockSkew is { } skew && skew.Duration() > BackendHealth.SkewWarning)
            {
                LogClockSkew(status.WorkerId, backend.Name, skew.TotalSeconds, _options.LeaseDuration.TotalSeconds);
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Stopping, or the engine is not answering: nothing to say about its clock.
        }
    }

    private async Task HeartbeatLoopAsync(IReadOnlyList<QueueWeight> queues, int concurrency, CancellationToken stop)
    {
        using var timer = new PeriodicTimer(_options.HeartbeatInterval, time);
        var queueNames = queues.Select(q => q.Name).ToArray();
        var taskNames = registry.Tasks.Select(t => t.Name).Order(StringComparer.Ordinal).ToArray();
        var schemasLeftOut = new List<string>();
        var argsSchemas = ArgsSchema.Announced(registry.Tasks, schemasLeftOut);
        if (schemasLeftOut.Count > 0)
        {
            LogArgsSchemasLeftOut(string.Join(", ", schemasLeftOut), ArgsSchema.MaxSchemaBytes, ArgsSchema.MaxTotalBytes);
        }
        // Logged once per outage, as the fetch loops do: a beat every few seconds would repeat it for as long as it lasts.
        var failing = false;
        while (true)
        {
            try
            {
                await backend.Coordination.HeartbeatAsync(new WorkerInfo
                {
                    Id = status.WorkerId,
                    Host = Environment.MachineName,
                    ProcessId = Environment.ProcessId,
                    Queues = queueNames,
                    Concurrency = concurrency,
                    Running = status.Running,
                    Processed = status.Processed,
                    Failed = status.Failed,
                    StartedAt = status.StartedAt,
                    HeartbeatAt = time.GetUtcNow(),
                    Version = WorkerVersion,
                    Tasks = taskNames,
                    ArgsSchemas = argsSchemas,
                    RunningTasks = status.RunningTasks
                        .Select(r => new WorkerTask(r.Lease.Message.Id, r.Lease.Message.Task, r.Lease.Attempt, r.StartedAt))
                        .OrderBy(r => r.StartedAt).ToArray(),
                    MemoryBytes = Environment.WorkingSet,
                    // Not waited for once the loop stops: a backend that does not answer ends the call only by the client's
                    // own time limits.
                }, stop).WaitAsync(stop).ConfigureAwait(false);
                await HandBackStaleAsync(stop).WaitAsync(stop).ConfigureAwait(false);
                var held = _inFlight.Values.Where(f => !f.Lost).ToArray();
                if (held.Length > 0)
                {
                    var sent = time.GetTimestamp();
                    var extendStarted = System.Diagnostics.Stopwatch.GetTimestamp();
                    var extension = await backend.Queue.ExtendLeasesAsync(held.Select(f => f.Lease.Ref).ToArray(), _options.LeaseDuration, stop).WaitAsync(stop).ConfigureAwait(false);
                    metrics.BackendCall("extend", extendStarted);
                    var lostRefs = extension.Lost.Count == 0 ? null : extension.Lost.ToHashSet();
                    foreach (var inFlight in held)
                    {
                        if (lostRefs is not null && lostRefs.Contains(inFlight.Lease.Ref))
                        {
                            // A lease whose outcome was already handed over was usually settled by that outcome's write
                            // before the extension ran: nothing was lost (MarkLost leaves it alone).
                            inFlight.LostByBackend = true;
                            MarkLost(inFlight);
                        }
                        else
                        {
                            Volatile.Write(ref inFlight.Deadline, sent + LeaseLifetimeTicks);
                        }
                    }
                    if (_limits is not null)
                    {
                        await _limits.ExtendAsync(stop).WaitAsync(stop).ConfigureAwait(false);
                    }
                    if (extension.CancelRequested.Count > 0)
                    {
                        var cancel = extension.CancelRequested.ToHashSet();
                        foreach (var inFlight in held)
                        {
                            if (cancel.Contains(inFlight.Lease.Message.Id))
                            {
                                inFlight.CancelRequested = true;
                                // As in MarkLost: a full fence between the flag and the source (RunOneAsync publishes the
                                // source, then InvokeAsync reads the flag).
                                Interlocked.MemoryBarrier();
                                CancelHandler(inFlight);
                            }
                        }
                    }
                }
                failing = false;
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                if (!failing)
                {
                    LogBackendError(ex, "heartbeat");
                }
                failing = true;
            }
            try
            {
                if (!await timer.WaitForNextTickAsync(stop).ConfigureAwait(false))
                {
                    return;
                }
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>How long a lease lasts as this worker counts it, in <see cref="TimeProvider"/> timestamp ticks: the lease
    /// duration less a margin (a tenth, at most 5 s) for the round trip and clock drift, so that a handler whose lease
    /// could not be extended stops before the backend gives its task to another worker.</summary>
    private long LeaseLifetimeTicks
    {
        get
        {
            var margin = TimeSpan.FromTicks(Math.Min(_options.LeaseDuration.Ticks / 10, TimeSpan.FromSeconds(5).Ticks));
            return (long)((_options.LeaseDuration - margin).TotalSeconds * time.TimestampFrequency);
        }
    }

    /// <summary>Marks lost every lease past its local deadline: extensions failed (the backend is unreachable) for
    /// nearly a whole lease, so the backend may hand the task to another worker any moment.</summary>
    private async Task LeaseWatchLoopAsync(CancellationToken stop)
    {
        var period = TimeSpan.FromTicks(Math.Clamp(_options.HeartbeatInterval.Ticks / 2, TimeSpan.FromMilliseconds(10).Ticks, TimeSpan.FromSeconds(1).Ticks));
        using var timer = new PeriodicTimer(period, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stop).ConfigureAwait(false))
            {
                var now = time.GetTimestamp();
                foreach (var inFlight in _inFlight.Values)
                {
                    if (!inFlight.Finished && !inFlight.Lost && now > Volatile.Read(ref inFlight.Deadline))
                    {
                        inFlight.LostHere = true;
                        MarkLost(inFlight);
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Hands back leases that waited in the prefetch buffer longer than a lease: the handlers are busy (or
    /// stuck), and another worker may run them. Extending them would hold them here for as long as the handlers are.</summary>
    private async Task HandBackStaleAsync(CancellationToken stop)
    {
        var now = time.GetTimestamp();
        var maxWait = (long)(_options.LeaseDuration.TotalSeconds * time.TimestampFrequency);
        List<InFlight>? stale = null;
        foreach (var inFlight in _inFlight.Values)
        {
            if (inFlight.IsWaiting && now - inFlight.FetchedAt > maxWait && inFlight.TryDrop())
            {
                (stale ??= []).Add(inFlight);
            }
        }
        if (stale is null)
        {
            return;
        }
        foreach (var inFlight in stale)
        {
            _inFlight.TryRemove(inFlight.Lease.Ref, out _);
            _limits?.Ended(inFlight.Lease.Ref);
        }
        try
        {
            var sweep = await backend.Queue.ReleaseAsync(stale.Select(f => f.Lease.Ref).ToArray(), stop).ConfigureAwait(false);
            LogHandedBackStale(stale.Count);
            await RaiseHandBackEndsAsync(sweep, stop).ConfigureAwait(false);
        }
        finally
        {
            // Not handed back (the backend failed): their leases run out unstarted and come back unspent.
            _slots!.Release(stale.Count);
        }
    }

    private async Task DrainAsync(Task[] runners)
    {
        _draining = true;
        _stopping = true;
        status.StoppedFetching();
        _ready.Writer.TryComplete();
        while (_ready.Reader.TryRead(out var inFlight))
        {
            if (inFlight.TryDrop())
            {
                _unstarted.Enqueue(inFlight);
            }
        }
        // Leases the limits stage holds until their start time go back too.
        foreach (var inFlight in _inFlight.Values)
        {
            if (inFlight.TryDrop())
            {
                _unstarted.Enqueue(inFlight);
            }
        }
        // Beside the grace, not before it: a backend that does not answer must not delay the grace's start.
        var releasing = ReleaseUnstartedAsync();
        var all = Task.WhenAll(runners);
        // The grace counts from the stop (a fetch in flight may have held up the drain's start).
        var startedAt = Interlocked.Read(ref _stopStartedAt);
        var grace = _options.ShutdownTimeout - (startedAt == 0 ? TimeSpan.Zero : time.GetElapsedTime(startedAt));
        var finished = await Task.WhenAny(all, Task.Delay(grace > TimeSpan.Zero ? grace : TimeSpan.Zero, time)).ConfigureAwait(false);
        if (finished != all)
        {
            LogShutdownTimeout(status.Running, _options.ShutdownTimeout);
            // A handler's own calls may end inside its token's callbacks (DetachedCancellation): not waited for here, and
            // each handler's source is cancelled on its own, so that one held callback does not hold back the others
            // (a source runs its callbacks one after another).
            foreach (var inFlight in _inFlight.Values)
            {
                CancelHandler(inFlight);
            }
            DetachedCancellation.Cancel(_hardStop);
            await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(5), time)).ConfigureAwait(false);
        }
        await releasing.ConfigureAwait(false);
        await ReleaseUnstartedAsync().ConfigureAwait(false);
    }

    /// <summary>Once the drain is over, ends every lease this worker may still hold — a handler that ignored the
    /// shutdown's cancellation, a release, start or outcome the backend did not take — as if it had run out
    /// (<see cref="IQueueBackend.AbandonLeasesAsync"/>), so that those tasks come back now rather than after their lease,
    /// and announces those it ended for good, which no other process would (<see cref="LeaseEndEvents.AnnounceAsync"/>).
    /// A supervised child always asks, so that its exit code can tell its supervisor that nothing is left
    /// (<see cref="WorkerExitCodes.HandedBackItsLeases"/>); another worker asks only when something may be left. True when
    /// nothing is left: the backend confirmed it, or there was nothing to ask.</summary>
    private async Task<bool> HandBackLeftoversAsync()
    {
        if (!ConveyorSupervisor.IsChildProcess && !_leftBehind && _inFlight.IsEmpty)
        {
            return true;
        }
        var fetchesEnded = await AwaitAbandonedFetchesAsync().ConfigureAwait(false);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(_stopBudget.Token);
        deadline.CancelAfter(LeftoversDeadline);
        LeaseSweep sweep;
        try
        {
            sweep = await backend.Queue.AbandonLeasesAsync(status.WorkerId, deadline.Token).WaitAsync(deadline.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogLeftoversFailed(ex, status.WorkerId);
            return false;
        }
        if (sweep.Count > 0)
        {
            LogLeftoversHandedBack(sweep.Count);
        }
        await LeaseHandBack.AnnounceAsync(backend, sweep, status.WorkerId, time, logger, deadline.Token).ConfigureAwait(false);
        // A fetch still running may lease more after this: not confirmed, so that a supervisor hands back again once this
        // process has exited (a supervised child then exits with LeasesNotHandedBack).
        return fetchesEnded;
    }

    /// <summary>Waits, at most <see cref="AbandonedFetchWait"/>, for the fetches the stop did not wait for: whatever they
    /// leased after all is then this worker's to hand back now, rather than left to run out (the tasks would come back
    /// only at their leases' end, each counted as a lapse). Their outcome does not matter here. True when every one has
    /// ended.</summary>
    private async Task<bool> AwaitAbandonedFetchesAsync()
    {
        if (_abandonedFetches.IsEmpty)
        {
            return true;
        }
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(_stopBudget.Token);
        deadline.CancelAfter(AbandonedFetchWait);
        var fetches = ObserveFailure(Task.WhenAll(_abandonedFetches));
        try
        {
            await fetches.WaitAsync(deadline.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested)
        {
            // Still running at the deadline: the hand-back goes ahead with what the backend holds now.
            LogAbandonedFetchRunning(AbandonedFetchWait);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // A fetch that failed or was cancelled leased nothing.
        }
        return fetches.IsCompleted;
    }

    /// <summary><paramref name="task"/>, whose failure, whenever it comes, is observed: for a task nothing may await
    /// to its end (a fetch the stop gave up on), which would otherwise raise an unobserved task exception.</summary>
    private static T ObserveFailure<T>(T task) where T : Task
    {
        _ = task.ContinueWith(static t => _ = t.Exception, CancellationToken.None,
            TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return task;
    }

    private async Task ReleaseUnstartedAsync()
    {
        var leases = new List<LeaseRef>();
        while (_unstarted.TryDequeue(out var inFlight))
        {
            leases.Add(inFlight.Lease.Ref);
            _inFlight.TryRemove(inFlight.Lease.Ref, out _);
            _limits?.Ended(inFlight.Lease.Ref);
        }
        if (leases.Count == 0)
        {
            return;
        }
        LeaseSweep sweep;
        try
        {
            // Bounded in the stop (the backend may not answer): what is not released runs out, and comes back unspent.
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(_stopBudget.Token);
            if (_stopping)
            {
                deadline.CancelAfter(LeftoversDeadline);
            }
            sweep = await backend.Queue.ReleaseAsync(leases, deadline.Token).WaitAsync(deadline.Token).ConfigureAwait(false);
            LogReleased(leases.Count);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Their leases run out and the reaper requeues them.
            _leftBehind = true;
            LogBackendError(ex, "release");
            return;
        }
        await RaiseHandBackEndsAsync(sweep, CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>Raises the events of the tasks that a hand-back of this worker's leases by id ended for good (a cancel
    /// asked, or a step held back whose workflow ended with it: <see cref="IQueueBackend.ReleaseAsync"/>), which no other
    /// process raises: on this process's bus while it runs, as the reaper does (the workflow's end follows, by
    /// <see cref="Workflows.WorkflowEndProbe"/>); in the drain straight to the other processes, as the process is about to
    /// end (<see cref="LeaseHandBack.AnnounceAsync"/>). A failure is logged: the ends are stored.</summary>
    private async Task RaiseHandBackEndsAsync(LeaseSweep sweep, CancellationToken cancellationToken)
    {
        if (sweep.Ended.Count == 0)
        {
            return;
        }
        if (_draining)
        {
            using var deadline = new CancellationTokenSource(LeftoversDeadline);
            await LeaseHandBack.AnnounceAsync(backend, sweep, status.WorkerId, time, logger, deadline.Token).ConfigureAwait(false);
            return;
        }
        try
        {
            await LeaseEndEvents.PublishAsync(backend.Store, events, sweep, status.WorkerId, time.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            if (!cancellationToken.IsCancellationRequested)
            {
                LogBackendError(ex, "read the tasks a hand-back ended");
            }
        }
    }

    /// <summary>Cancels the handler running <paramref name="inFlight"/>, if any, without waiting for its token's callbacks:
    /// the handler's own calls may end inside them, for as long as the client's time limits (DetachedCancellation). A source
    /// already disposed means the handler has just returned.</summary>
    private static void CancelHandler(InFlight inFlight)
    {
        if (inFlight.Cancellation is not { } cancellation)
        {
            return;
        }
        try
        {
            DetachedCancellation.Cancel(cancellation);
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>Marks the start of the stop (once): the grace and the stop's budget count from here.</summary>
    private void BeginStop()
    {
        if (Interlocked.CompareExchange(ref _stopStartedAt, time.GetTimestamp(), 0) != 0)
        {
            return;
        }
        try
        {
            _stopBudget.CancelAfter(_options.ShutdownTimeout + StopBudgetMargin);
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>Awaits <paramref name="task"/> until the stop's budget runs out; false when it ran out first. A failure
    /// of the task is its own to log.</summary>
    private async Task<bool> WithinStopBudgetAsync(Task task)
    {
        try
        {
            await task.WaitAsync(_stopBudget.Token).ConfigureAwait(false);
            return true;
        }
        catch (OperationCanceledException) when (_stopBudget.IsCancellationRequested)
        {
            return false;
        }
    }

    public override void Dispose()
    {
        _hardStop.Dispose();
        _stopBudget.Dispose();
        _slots?.Dispose();
        _gathering.Dispose();
        base.Dispose();
    }

    [LoggerMessage(60, LogLevel.Warning, "The stop's time for the backend ran out (the graceful timeout plus 7 s): gave up waiting to {Call}; those leases run out and come back")]
    private partial void LogStopBudgetSpent(string call);

    [LoggerMessage(18, LogLevel.Information, "Worker {WorkerId} is its supervisor's spare: started, it fetches nothing until it takes the place of a child that recycles or exits")]
    private partial void LogSpareWaiting(string workerId);

    [LoggerMessage(1, LogLevel.Information, "Worker {WorkerId} started on queues {Queues}, concurrency {Concurrency}, prefetch {Prefetch}")]
    private partial void LogStarted(string workerId, string queues, int concurrency, string prefetch);

    [LoggerMessage(2, LogLevel.Information, "Worker {WorkerId} stopped")]
    private partial void LogStopped(string workerId);

    [LoggerMessage(3, LogLevel.Warning, "Backend call '{Operation}' failed; retrying with backoff")]
    private partial void LogBackendError(Exception exception, string operation);

    [LoggerMessage(4, LogLevel.Information, "Backend reachable again")]
    private partial void LogBackendRecovered();

    [LoggerMessage(6, LogLevel.Warning, "Lease of task {TaskId} was lost (taken back, or not extended in time); its handler is cancelled and its outcome will be dropped")]
    private partial void LogLeaseLost(Guid taskId);

    [LoggerMessage(9, LogLevel.Warning, "Outcome of task {TaskId} dropped: its lease was lost while its handler ran")]
    private partial void LogOutcomeDropped(Guid taskId);

    [LoggerMessage(16, LogLevel.Warning, "Task {TaskId} ({Task}, attempt {Attempt}) passed its soft time limit of {Limit}: its cancellation token was cancelled")]
    private partial void LogSoftLimit(Guid taskId, string task, int attempt, TimeSpan limit);

    [LoggerMessage(14, LogLevel.Debug, "Completion of task {TaskId} (lease {Token}) ignored by the backend: its lease was no longer held (it ran out, and the task was taken back or leased again); no event is raised for it")]
    private partial void LogCompletionIgnored(Guid taskId, long token);

    [LoggerMessage(15, LogLevel.Debug, "Completion of task {TaskId} (lease {Token}) ignored by the backend when its batch was written again after a failed call, which may have stored it: its event is raised as the task's record says (none if another attempt holds or ended it since)")]
    private partial void LogCompletionIgnoredOnRewrite(Guid taskId, long token);

    [LoggerMessage(10, LogLevel.Information, "Handed back {Count} tasks that waited longer than a lease in the prefetch buffer (handlers busy)")]
    private partial void LogHandedBackStale(int count);

    [LoggerMessage(7, LogLevel.Warning, "{Running} tasks still running after the shutdown grace of {Grace}; cancelling them")]
    private partial void LogShutdownTimeout(int running, TimeSpan grace);

    [LoggerMessage(8, LogLevel.Information, "Handed back {Count} unstarted tasks")]
    private partial void LogReleased(int count);

    [LoggerMessage(12, LogLevel.Warning, "Handed back {Count} leases still held at the end of the drain (handlers that ignored their cancellation, or writes the backend did not take)")]
    private partial void LogLeftoversHandedBack(int count);

    [LoggerMessage(17, LogLevel.Warning, "Worker {WorkerId}: this process's clock differs from {Engine}'s by {SkewSeconds:0.###} s; leases ({LeaseSeconds} s), ETAs and retry times are written with each process's clock, so set every machine's clock by NTP")]
    private partial void LogClockSkew(string workerId, string engine, double skewSeconds, double leaseSeconds);

    [LoggerMessage(19, LogLevel.Warning, "A fetch that the stop gave up on still ran {Wait} after the drain: what it leases after the hand-back runs out and comes back (a supervisor, if any, hands it back once this process exits)")]
    private partial void LogAbandonedFetchRunning(TimeSpan wait);

    [LoggerMessage(13, LogLevel.Warning, "Could not hand back the leases worker {WorkerId} still holds at the end of its drain; its supervisor hands them back, or they run out")]
    private partial void LogLeftoversFailed(Exception exception, string workerId);

    [LoggerMessage(11, LogLevel.Information, "Arguments schemas of {Tasks} not announced: over {MaxSchema} bytes each or {MaxTotal} in all; servers without their handlers leave their arguments to this worker")]
    private partial void LogArgsSchemasLeftOut(string tasks, int maxSchema, int maxTotal);
}
