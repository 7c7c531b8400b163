using Conveyor.Backends;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor;

/// <summary>
/// Watches the running handlers from a thread of its own, so that handlers that block or spin on every pool thread
/// cannot hold it up.
/// <list type="bullet">
/// <item>Soft limit (the task's <see cref="TaskMessage.Timeout"/>, else <see cref="WorkerOptions.SoftTimeLimit"/>): not
/// watched here; the worker cancels the handler's token and logs it as it does, whether the handler honours it or
/// not (a look every <see cref="CheckInterval"/> would miss a handler that ends at once).</item>
/// <item>Hard limit (<see cref="WorkerOptions.TimeLimit"/>): a handler that runs past it cannot be stopped from inside
/// the process, so the process ends. First the overdue attempts are recorded failed (<see cref="ErrorType"/>, retried
/// or dead by their policy), then every other lease this worker holds is abandoned so its tasks come back at once, then
/// the events of those outcomes and of the tasks the hand-back ended for good are sent to the other processes
/// (<see cref="EventAnnouncement"/>: this process's own bridge would not live to send them), then the process exits with
/// <see cref="WorkerExitCodes.HardTimeLimit"/> to be replaced by its supervisor or service manager. The worker stops
/// fetching before any of that, so that it does not lease the handed-back tasks again.</item>
/// </list>
/// </summary>
internal sealed partial class TimeLimitWatchdog(
    IConveyorBackend backend,
    IOptions<ConveyorOptions> options,
    WorkerStatus status,
    TimeProvider time,
    IServiceProvider services,
    ILogger<TimeLimitWatchdog> logger) : IHostedService, IDisposable
{
    /// <summary>The error type of an attempt ended by the hard time limit.</summary>
    public const string ErrorType = "Conveyor.HardTimeLimit";

    private static readonly TimeSpan CheckInterval = TimeSpan.FromMilliseconds(100);
    /// <summary>Longest the backend calls before the exit may take: with the backend down, the process still ends.</summary>
    private static readonly TimeSpan ExitDeadline = TimeSpan.FromSeconds(10);
    private readonly ManualResetEventSlim _stop = new();
    private Thread? _thread;

    /// <summary>Whether its thread runs (only with a hard limit).</summary>
    internal bool IsWatching => _thread is not null;

    /// <summary>Replaces the process exit in tests.</summary>
    internal Action<int> Exit { get; set; } = ProcessTermination.ExitNow;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        // Only with a hard limit to watch: the soft limit is the worker's (see above), and an idle thread would still wake
        // ten times a second.
        if (options.Value.RunWorker && options.Value.Worker.TimeLimit is not null)
        {
            _thread = new Thread(Watch) { IsBackground = true, Name = "Conveyor time limits" };
            _thread.Start();
        }
        return Task.CompletedTask;
    }

    // Keeps watching through the worker's drain (a handler can pass its hard limit while the host stops); the thread
    // ends when the host is disposed.
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private void Watch()
    {
        while (!_stop.Wait(CheckInterval))
        {
            Check();
        }
    }

    /// <summary>One look at the running handlers; true when the hard limit ended the process (or would have).</summary>
    internal bool Check()
    {
        var worker = options.Value.Worker;
        var now = time.GetUtcNow();
        var running = status.RunningTasks;
        List<RunningTask>? overdue = null;
        foreach (var task in running)
        {
            var elapsed = now - task.StartedAt;
            if (worker.TimeLimit is { } hard && elapsed >= hard)
            {
                (overdue ??= []).Add(task);
            }
        }
        if (overdue is null)
        {
            return false;
        }
        EndProcess(overdue, worker.TimeLimit!.Value);
        return true;
    }

    private void EndProcess(List<RunningTask> overdue, TimeSpan limit)
    {
        foreach (var task in overdue)
        {
            LogHardLimit(task.Lease.Message.Id, task.Lease.Message.Task, task.Lease.Attempt, limit, status.WorkerId);
        }
        using var deadline = new CancellationTokenSource(ExitDeadline);
        try
        {
            // First, so that the leases handed back below are not fetched again by this worker.
            WorkerStop.StopFetchingAsync(services, status).WaitAsync(deadline.Token).GetAwaiter().GetResult();
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogBackendError(ex, "stop fetching");
        }
        var now = time.GetUtcNow();
        var events = new List<TaskEvent>();
        try
        {
            var completions = overdue.Select(t => Failure(t.Lease, limit, now)).ToList();
            var overrides = backend.Queue.CompleteAsync(completions, deadline.Token).WaitAsync(deadline.Token).GetAwaiter().GetResult();
            // By indexer, as the worker does: a lease named twice must not throw away every event of the batch.
            var settled = new Dictionary<LeaseRef, TaskState?>(overrides.Count);
            foreach (var o in overrides)
            {
                // A state given outranks an ignored answer for the same lease (one named twice).
                if (o.State is not null || !settled.ContainsKey(o.Lease))
                {
                    settled[o.Lease] = o.State;
                }
            }
            for (var i = 0; i < overdue.Count; i++)
            {
                if (!settled.TryGetValue(completions[i].Lease, out var state))
                {
                    events.Add(Outcome(overdue[i], completions[i], now, null));
                }
                else if (state is not null)
                {
                    // Settled otherwise (a retry whose cancel was asked is cancelled); an ignored one changed nothing.
                    events.Add(Outcome(overdue[i], completions[i], now, state));
                }
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The supervisor abandons this worker's leases when it sees the exit; without one, they run out.
            LogBackendError(ex, "record the overdue attempts");
        }
        try
        {
            var sweep = backend.Queue.AbandonLeasesAsync(status.WorkerId, deadline.Token).WaitAsync(deadline.Token).GetAwaiter().GetResult();
            LogAbandoned(status.WorkerId, sweep.Count);
            // Its concurrency slots go with its leases.
            backend.Limits.ReleaseOwnerAsync(status.WorkerId, deadline.Token).WaitAsync(deadline.Token).GetAwaiter().GetResult();
            events.AddRange(LeaseEndEvents.ReadAsync(backend.Store, sweep, status.WorkerId, now, deadline.Token).WaitAsync(deadline.Token).GetAwaiter().GetResult());
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogBackendError(ex, "hand back the other leases");
        }
        try
        {
            EventAnnouncement.PublishAsync(backend, events, status.WorkerId, deadline.Token).WaitAsync(deadline.Token).GetAwaiter().GetResult();
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogBackendError(ex, "send the events of the ended attempts");
        }
        Environment.ExitCode = WorkerExitCodes.HardTimeLimit;
        Exit(WorkerExitCodes.HardTimeLimit);
    }

    /// <summary>The overdue attempt failed: retried by its policy (a time limit counts as a <see cref="TimeoutException"/>
    /// for its exception lists), or dead on its last attempt, as the worker's own failures.</summary>
    private Completion Failure(Lease lease, TimeSpan limit, DateTimeOffset now) =>
        AttemptOutcomes.ByPolicy(lease, new TaskError(ErrorType, $"The attempt ran past the hard time limit of {limit}; worker {status.WorkerId} was ended to stop it."),
            typeof(TimeoutException), now);

    /// <summary>The event the worker would have raised for the overdue attempt's outcome, which the backend settled in
    /// <paramref name="state"/> (null: as asked).</summary>
    private TaskEvent Outcome(RunningTask task, Completion completion, DateTimeOffset now, TaskState? state) =>
        TaskEvent.OfOutcome(task.Lease.Message, completion, status.WorkerId, now - task.StartedAt, state);

    public void Dispose()
    {
        _stop.Set();
        _thread?.Join(TimeSpan.FromSeconds(1));
        _stop.Dispose();
    }

    [LoggerMessage(2, LogLevel.Critical, "Task {TaskId} ({Task}, attempt {Attempt}) passed the hard time limit of {Limit}: worker {WorkerId} records the attempt failed and exits")]
    private partial void LogHardLimit(Guid taskId, string task, int attempt, TimeSpan limit, string workerId);

    [LoggerMessage(3, LogLevel.Warning, "Worker {WorkerId} handed back {Count} other leases before exiting")]
    private partial void LogAbandoned(string workerId, int count);

    [LoggerMessage(4, LogLevel.Error, "Could not {Operation} before the hard-limit exit")]
    private partial void LogBackendError(Exception exception, string operation);
}
