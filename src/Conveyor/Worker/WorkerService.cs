using System.Collections.Concurrent;
using System.Threading.Channels;
using Conveyor.Backends;
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
/// leaves its leases to run out, after which the reaper requeues them as redeliveries.
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
    ILogger<WorkerService> logger) : BackgroundService
{
    private readonly WorkerOptions _options = options.Value.Worker;
    private readonly ConcurrentDictionary<Guid, InFlight> _inFlight = new();
    private readonly Channel<Lease> _ready = Channel.CreateUnbounded<Lease>(new UnboundedChannelOptions { SingleWriter = false });
    // Bounded, so that outcomes waiting to be written cannot pile up without end when the backend writes slower
    // than handlers finish: a full buffer holds the runners (and with them the prefetch) until it drains.
    private readonly Channel<Completion> _completions = Channel.CreateBounded<Completion>(
        new BoundedChannelOptions(Math.Max(1, options.Value.Worker.CompletionBatchSize) * 2) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
    private readonly ConcurrentQueue<Lease> _unstarted = new();
    private readonly CancellationTokenSource _hardStop = new();
    private PrefetchGate? _slots;
    // Completed when a ready notification names one of this worker's queues (or any queue); replaced by each wake-up.
    private volatile TaskCompletionSource _readySignal = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private HashSet<string> _queueNames = new(StringComparer.Ordinal);
    private volatile bool _draining;
    // Shared by the fetch loops, so that an outage is logged once, not once per loop.
    private int _fetchFailing;

    private sealed class InFlight(Lease lease)
    {
        public Lease Lease { get; } = lease;
        /// <summary>How long its handler ran; null when it never ran.</summary>
        public TimeSpan? Duration { get; set; }
        public CancellationTokenSource? Cancellation { get; set; }
        public volatile bool CancelRequested;
        /// <summary>Set once the outcome is handed to the completion writer.</summary>
        public volatile bool Finished;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!options.Value.RunWorker)
        {
            return;
        }
        await Task.Yield();
        var concurrency = Math.Max(1, _options.Concurrency);
        _slots = new PrefetchGate(concurrency, _options.EffectivePrefetch, _options.Prefetch);
        var prefetch = _slots.Max;
        var queues = _options.ParseQueues();
        status.StartedAt = time.GetUtcNow();
        status.IsRunning = true;
        LogStarted(status.WorkerId, string.Join(",", queues.Select(q => q.Name)), concurrency,
            _options.Prefetch is { } fixedPrefetch ? fixedPrefetch.ToString(System.Globalization.CultureInfo.InvariantCulture) : $"automatic, {_slots.Size} to start, up to {prefetch}");

        _queueNames = new HashSet<string>(queues.Select(q => q.Name), StringComparer.Ordinal);
        // Subscribed before the first fetch, so that work made ready between that fetch and the wait still wakes it.
        IAsyncDisposable? readySubscription = null;
        try
        {
            readySubscription = await backend.Notifier.SubscribeAsync(NotifierChannels.Ready, OnReady, stoppingToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            return;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Without notifications the worker still finds work, by its fallback poll every FetchWait.
            LogBackendError(ex, "subscribe to ready notifications");
        }

        var runners = new Task[concurrency];
        for (var i = 0; i < concurrency; i++)
        {
            runners[i] = Task.Run(RunLoopAsync, CancellationToken.None);
        }
        var completer = Task.Run(CompleteLoopAsync, CancellationToken.None);
        using var heartbeatStop = new CancellationTokenSource();
        var heartbeat = Task.Run(() => HeartbeatLoopAsync(queues, concurrency, heartbeatStop.Token), CancellationToken.None);

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
            _completions.Writer.TryComplete();
            await completer.ConfigureAwait(false);
            await heartbeatStop.CancelAsync().ConfigureAwait(false);
            await heartbeat.ConfigureAwait(false);
            try
            {
                await backend.Coordination.RemoveWorkerAsync(status.WorkerId, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                LogBackendError(ex, "remove worker");
            }
            if (readySubscription is not null)
            {
                await readySubscription.DisposeAsync().ConfigureAwait(false);
            }
            status.IsRunning = false;
            LogStopped(status.WorkerId);
        }
    }

    private async Task FetchLoopAsync(IReadOnlyList<QueueWeight> queues, int prefetch, CancellationToken stoppingToken)
    {
        var slots = _slots!;
        var failures = 0;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await slots.WaitAsync(stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            // Take every free slot, so one fetch fills the whole prefetch buffer.
            var wanted = 1;
            while (wanted < prefetch && slots.TryTake())
            {
                wanted++;
            }
            IReadOnlyList<Lease> leases;
            // Taken before the fetch: a ready notification that arrives while it runs ends the wait below at once.
            var wake = _readySignal.Task;
            var fetchStart = System.Diagnostics.Stopwatch.GetTimestamp();
            try
            {
                leases = await backend.Queue.FetchAsync(new FetchRequest
                {
                    WorkerId = status.WorkerId,
                    // The backend weighs the queues (QueueOrder), or keeps their order when strict.
                    Queues = queues,
                    MaxCount = wanted,
                    LeaseDuration = _options.LeaseDuration,
                    StrictOrder = _options.StrictQueueOrder,
                }, stoppingToken).ConfigureAwait(false);
                if (failures > 0 && Interlocked.Exchange(ref _fetchFailing, 0) == 1)
                {
                    LogBackendRecovered();
                }
                failures = 0;
                status.BackendReachable = true;
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                slots.Release(wanted);
                return;
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                slots.Release(wanted);
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
                slots.Release(wanted - leases.Count);
            }
            // A fetch that found work measures the round trip; one that waited for work would measure the wait, so a
            // fetch that got less than it asked for, or took longer than any round trip should, is not a sample.
            var fetchTime = System.Diagnostics.Stopwatch.GetElapsedTime(fetchStart);
            if (leases.Count > 0 && leases.Count == wanted && fetchTime < MaxRoundTripSample)
            {
                slots.RecordFetch(fetchTime);
            }
            foreach (var lease in leases)
            {
                _inFlight[lease.Message.Id] = new InFlight(lease);
                _ready.Writer.TryWrite(lease);
            }
            if (leases.Count == 0)
            {
                // Nothing ready: wait for a ready notification, or look again after FetchWait in case one was lost.
                try
                {
                    await wake.WaitAsync(_options.FetchWait, time, stoppingToken).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    private void OnReady(Notification notification)
    {
        if (notification.Missed || notification.Payload.Length == 0 || _queueNames.Contains(notification.Payload))
        {
            Interlocked.Exchange(ref _readySignal, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
        }
    }

    /// <summary>Longer than a fetch's round trip to a healthy backend takes; a fetch this long waited for work.</summary>
    private static readonly TimeSpan MaxRoundTripSample = TimeSpan.FromMilliseconds(250);

    private static TimeSpan Backoff(int failures) =>
        TimeSpan.FromMilliseconds(Math.Min(5000, 100 * Math.Pow(2, Math.Min(failures, 10))) * (0.8 + Random.Shared.NextDouble() * 0.4));

    private async Task RunLoopAsync()
    {
        var reader = _ready.Reader;
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            while (reader.TryRead(out var lease))
            {
                if (_draining)
                {
                    _unstarted.Enqueue(lease);
                    continue;
                }
                await RunOneAsync(lease).ConfigureAwait(false);
            }
        }
    }

    private async Task RunOneAsync(Lease lease)
    {
        var message = lease.Message;
        var inFlight = _inFlight.GetValueOrDefault(message.Id) ?? new InFlight(lease);
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        status.Started();
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
            // Another worker (say, a newer version in a rolling deploy) may know it: retry by the policy.
            completion = Failure(lease, new TaskError("Conveyor.UnknownTask", $"No handler is registered for task '{message.Task}' on worker {status.WorkerId}."), permanent: false);
        }
        else
        {
            if (events.IsObserved)
            {
                events.Publish(new TaskEvent
                {
                    Kind = TaskEventKind.Started,
                    State = TaskState.Running,
                    TaskId = message.Id,
                    Task = message.Task,
                    Queue = message.Queue,
                    Attempt = lease.Attempt,
                    At = time.GetUtcNow(),
                    WorkerId = status.WorkerId,
                    Origin = status.WorkerId,
                });
            }
            status.HandlerStarted(lease, time.GetUtcNow());
            try
            {
                completion = await InvokeAsync(lease, inFlight, descriptor).ConfigureAwait(false);
            }
            finally
            {
                status.HandlerEnded(lease);
            }
            inFlight.Duration = System.Diagnostics.Stopwatch.GetElapsedTime(started);
            // Only handlers that ran size the prefetch: a lease settled without running (cancelled, expired) says
            // nothing about how long tasks take.
            _slots!.RecordHandler(started);
        }
        status.Finished(completion.Kind == CompletionKind.Succeeded);
        inFlight.Finished = true;
        try
        {
            await _completions.Writer.WriteAsync(completion).ConfigureAwait(false);
        }
        catch (ChannelClosedException)
        {
            // Past the shutdown grace the completion writer has given up: the lease runs out and the task is redelivered.
        }
        _slots!.Release();
    }

    private const string ShutdownErrorType = "Conveyor.WorkerShutdown";

    private async Task<Completion> InvokeAsync(Lease lease, InFlight inFlight, TaskDescriptor descriptor)
    {
        var message = lease.Message;
        using var cancellation = CancellationTokenSource.CreateLinkedTokenSource(_hardStop.Token);
        if ((message.Timeout ?? _options.SoftTimeLimit) is { } timeout)
        {
            cancellation.CancelAfter(timeout);
        }
        inFlight.Cancellation = cancellation;
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
            return new Completion { Lease = lease.Ref, Kind = CompletionKind.Succeeded, Attempt = lease.Attempt, Result = result, At = time.GetUtcNow() };
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
            if (inFlight.CancelRequested)
            {
                return new Completion { Lease = lease.Ref, Kind = CompletionKind.Cancelled, Attempt = lease.Attempt, At = time.GetUtcNow() };
            }
            if (_hardStop.IsCancellationRequested)
            {
                // Interrupted after the grace period: it runs again at once, and the attempt counts, as a time limit's would.
                return Failure(lease, new TaskError(ShutdownErrorType, "The worker shut down while the task ran."), permanent: false, retryNow: true);
            }
            return Failure(lease, new TaskError(typeof(TimeoutException).FullName!, $"The attempt exceeded its time limit of {message.Timeout}."), permanent: false);
        }
        catch (PermanentTaskException ex)
        {
            // Logged by the logging middleware (TaskLoggingMiddleware), with the rest of the attempt's lines.
            return Failure(lease, TaskError.From(ex), permanent: true);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            return Failure(lease, TaskError.From(ex), permanent: false);
        }
        finally
        {
            inFlight.Cancellation = null;
            await scope.DisposeAsync().ConfigureAwait(false);
        }
    }

    private Completion Failure(Lease lease, TaskError error, bool permanent, bool retryNow = false)
    {
        var now = time.GetUtcNow();
        if (permanent || lease.Attempt >= lease.Message.MaxAttempts)
        {
            return new Completion { Lease = lease.Ref, Kind = CompletionKind.Dead, Attempt = lease.Attempt, Error = error, At = now };
        }
        return new Completion
        {
            Lease = lease.Ref,
            Kind = CompletionKind.Retry,
            Attempt = lease.Attempt,
            Error = error,
            RetryAt = retryNow ? now : now + lease.Message.Retry.DelayAfter(lease.Attempt),
            At = now,
        };
    }

    private async Task CompleteLoopAsync()
    {
        var reader = _completions.Reader;
        var max = Math.Max(1, _options.CompletionBatchSize);
        var batch = new List<Completion>(max);
        var failures = 0;
        // Completions that arrive while a write is in flight form the next batch: batching costs no added latency.
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            while (batch.Count < max && reader.TryRead(out var completion))
            {
                batch.Add(completion);
            }
            while (true)
            {
                try
                {
                    await backend.Queue.CompleteAsync(batch, CancellationToken.None).ConfigureAwait(false);
                    failures = 0;
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
                        break;
                    }
                    // Leases stay held and heartbeated while we retry; past the lease they are redelivered anyway.
                    await Task.Delay(Backoff(failures), time).ConfigureAwait(false);
                }
            }
            var observed = events.IsObserved && failures == 0;
            foreach (var completion in batch)
            {
                if (_inFlight.TryRemove(completion.Lease.TaskId, out var inFlight) && observed)
                {
                    PublishOutcome(completion, inFlight);
                }
            }
            batch.Clear();
        }
    }

    /// <summary>Raises the event of an outcome whose completion was written.</summary>
    private void PublishOutcome(Completion completion, InFlight inFlight)
    {
        var message = inFlight.Lease.Message;
        events.Publish(new TaskEvent
        {
            Kind = completion.Kind.EventKind(),
            State = completion.Kind.StateAfter(),
            TaskId = message.Id,
            Task = message.Task,
            Queue = message.Queue,
            Attempt = completion.Attempt,
            At = completion.At,
            WorkerId = status.WorkerId,
            Duration = inFlight.Duration,
            Error = completion.Error,
            RetryAt = completion.RetryAt,
            Origin = status.WorkerId,
        });
    }

    private async Task HeartbeatLoopAsync(IReadOnlyList<QueueWeight> queues, int concurrency, CancellationToken stop)
    {
        using var timer = new PeriodicTimer(_options.HeartbeatInterval, time);
        var queueNames = queues.Select(q => q.Name).ToArray();
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
                }, stop).ConfigureAwait(false);
                var held = _inFlight.Values.Select(f => f.Lease.Ref).ToArray();
                if (held.Length > 0)
                {
                    var extension = await backend.Queue.ExtendLeasesAsync(held, _options.LeaseDuration, stop).ConfigureAwait(false);
                    foreach (var id in extension.CancelRequested)
                    {
                        if (_inFlight.TryGetValue(id, out var inFlight))
                        {
                            inFlight.CancelRequested = true;
                            inFlight.Cancellation?.Cancel();
                        }
                    }
                    foreach (var lost in extension.Lost)
                    {
                        // A lease whose outcome was already handed over was usually settled by that
                        // outcome's write before the extension ran: nothing was lost.
                        if (_inFlight.TryGetValue(lost.TaskId, out var inFlight) && !inFlight.Finished)
                        {
                            LogLeaseLost(lost.TaskId);
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

    private async Task DrainAsync(Task[] runners)
    {
        _draining = true;
        _ready.Writer.TryComplete();
        while (_ready.Reader.TryRead(out var lease))
        {
            _unstarted.Enqueue(lease);
        }
        await ReleaseUnstartedAsync().ConfigureAwait(false);
        var all = Task.WhenAll(runners);
        var finished = await Task.WhenAny(all, Task.Delay(_options.ShutdownTimeout, time)).ConfigureAwait(false);
        if (finished != all)
        {
            LogShutdownTimeout(status.Running, _options.ShutdownTimeout);
            await _hardStop.CancelAsync().ConfigureAwait(false);
            await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(5), time)).ConfigureAwait(false);
        }
        await ReleaseUnstartedAsync().ConfigureAwait(false);
    }

    private async Task ReleaseUnstartedAsync()
    {
        var leases = new List<LeaseRef>();
        while (_unstarted.TryDequeue(out var lease))
        {
            leases.Add(lease.Ref);
            _inFlight.TryRemove(lease.Message.Id, out _);
        }
        if (leases.Count == 0)
        {
            return;
        }
        try
        {
            await backend.Queue.ReleaseAsync(leases, CancellationToken.None).ConfigureAwait(false);
            LogReleased(leases.Count);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Their leases run out and the reaper requeues them.
            LogBackendError(ex, "release");
        }
    }

    public override void Dispose()
    {
        _hardStop.Dispose();
        _slots?.Dispose();
        base.Dispose();
    }

    [LoggerMessage(1, LogLevel.Information, "Worker {WorkerId} started on queues {Queues}, concurrency {Concurrency}, prefetch {Prefetch}")]
    private partial void LogStarted(string workerId, string queues, int concurrency, string prefetch);

    [LoggerMessage(2, LogLevel.Information, "Worker {WorkerId} stopped")]
    private partial void LogStopped(string workerId);

    [LoggerMessage(3, LogLevel.Warning, "Backend call '{Operation}' failed; retrying with backoff")]
    private partial void LogBackendError(Exception exception, string operation);

    [LoggerMessage(4, LogLevel.Information, "Backend reachable again")]
    private partial void LogBackendRecovered();

    [LoggerMessage(6, LogLevel.Warning, "Lease of task {TaskId} was lost; its outcome will be ignored")]
    private partial void LogLeaseLost(Guid taskId);

    [LoggerMessage(7, LogLevel.Warning, "{Running} tasks still running after the shutdown grace of {Grace}; cancelling them")]
    private partial void LogShutdownTimeout(int running, TimeSpan grace);

    [LoggerMessage(8, LogLevel.Information, "Handed back {Count} unstarted tasks")]
    private partial void LogReleased(int count);
}
