using Conveyor.Backends;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor;

/// <summary>
/// Takes part in the election when <see cref="ConveyorOptions.RunScheduler"/> is set: tries to take the leader lease
/// every third of <see cref="SchedulerOptions.LeaderLease"/> (at once when the notifier says a leader stepped down), and
/// renews it as often while it leads. A leader that could not renew for two thirds of the lease stops leading before
/// the lease can run out, so two processes never act as leader at once on a healthy clock; on shutdown it gives the
/// lease up and says so on <see cref="NotifierChannels.Leader"/>, so that another process takes over at once.
/// </summary>
internal sealed partial class LeaderElector(
    IConveyorBackend backend,
    IOptions<ConveyorOptions> options,
    TimeProvider time,
    WorkerStatus status,
    ILogger<LeaderElector> logger) : BackgroundService, ILeadership
{
    /// <summary>The lease's name: "scheduler", as before the maintenance services were split out, so that processes of
    /// both versions elect one leader during a rolling upgrade.</summary>
    internal const string LeadershipName = "scheduler";

    private readonly SchedulerOptions _options = options.Value.Scheduler;
    private readonly Lock _gate = new();
    private CancellationTokenSource? _term;
    private TaskCompletionSource<CancellationToken> _elected = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile TaskCompletionSource _stepDownHeard = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public bool IsLeader
    {
        get
        {
            lock (_gate)
            {
                return _term is not null;
            }
        }
    }

    public string Owner => status.WorkerId;

    public Task<CancellationToken> WaitForLeadershipAsync(CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            return _elected.Task.WaitAsync(cancellationToken);
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // The host cancels this token on its own thread: the calls under way must not end there (DetachedCancellation).
        using var detached = DetachedCancellation.LinkTo(stoppingToken);
        stoppingToken = detached.Token;
        if (!options.Value.RunScheduler)
        {
            return;
        }
        await Task.Yield();
        IAsyncDisposable? subscription = null;
        try
        {
            subscription = await backend.Notifier.SubscribeAsync(NotifierChannels.Leader, OnLeaderNotification, stoppingToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            return;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Without it a follower takes over when the lease runs out instead of at once.
            LogBackendError(ex);
        }
        var lastRenewal = DateTimeOffset.MinValue;
        var failing = false;
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                var heard = _stepDownHeard.Task;
                try
                {
                    var leads = await backend.Coordination.TryAcquireLeadershipAsync(LeadershipName, Owner, _options.LeaderLease, stoppingToken)
                        .WaitAsync(stoppingToken).ConfigureAwait(false);
                    if (leads)
                    {
                        lastRenewal = time.GetUtcNow();
                        BeginTerm();
                    }
                    else
                    {
                        EndTerm();
                    }
                    if (failing)
                    {
                        failing = false;
                        LogBackendRecovered();
                    }
                }
                catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                {
                    break;
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    if (!failing)
                    {
                        failing = true;
                        LogBackendError(ex);
                    }
                    // The lease may run out before the backend answers again: stop leading while another could still
                    // take over after it expires, never after.
                    if (time.GetUtcNow() - lastRenewal >= _options.LeaderLease * 2 / 3)
                    {
                        EndTerm();
                    }
                }
                try
                {
                    await Task.WhenAny(heard, Task.Delay(_options.LeaderLease / 3, time, stoppingToken)).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
        }
        finally
        {
            var wasLeader = EndTerm();
            if (wasLeader)
            {
                try
                {
                    // Bounded: the host stops its services one after another, and the worker's drain waits behind this one.
                    // Against a backend that does not answer, Npgsql's command timeout (30 s) used up the host's whole
                    // shutdown time here; unreleased, the leadership runs out on its own.
                    using var deadline = new CancellationTokenSource(ReleaseDeadline);
                    await backend.Coordination.ReleaseLeadershipAsync(LeadershipName, Owner, deadline.Token).WaitAsync(deadline.Token).ConfigureAwait(false);
                    await backend.Notifier.PublishAsync(NotifierChannels.Leader, LeadershipName, deadline.Token).AsTask().WaitAsync(deadline.Token).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    LogBackendError(ex);
                }
            }
            if (subscription is not null)
            {
                await subscription.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>Longest a stop waits to release the leadership and say so.</summary>
    private static readonly TimeSpan ReleaseDeadline = TimeSpan.FromSeconds(2);

    private void OnLeaderNotification(Notification notification)
    {
        // A leader stepped down (or notifications were lost): try for the lease now rather than at the next tick.
        Interlocked.Exchange(ref _stepDownHeard, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    }

    private void BeginTerm()
    {
        lock (_gate)
        {
            if (_term is not null)
            {
                return;
            }
            _term = new CancellationTokenSource();
            _elected.TrySetResult(_term.Token);
        }
        LogLeadership(Owner, true);
    }

    /// <summary>Ends the term if there is one; true when it did.</summary>
    private bool EndTerm()
    {
        CancellationTokenSource? term;
        lock (_gate)
        {
            term = _term;
            if (term is null)
            {
                return false;
            }
            _term = null;
            _elected = new TaskCompletionSource<CancellationToken>(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        LogLeadership(Owner, false);
        // Not disposed: leader-only services may still hold its token (a cancelled token stays valid without its source).
        // Not on this thread: the leader-only services' calls under way may end inside its callbacks (DetachedCancellation).
        DetachedCancellation.Cancel(term);
        return true;
    }

    [LoggerMessage(20, LogLevel.Information, "Scheduler {Owner} leadership: {IsLeader}")]
    private partial void LogLeadership(string owner, bool isLeader);

    [LoggerMessage(22, LogLevel.Warning, "Leader election: backend call failed; retrying")]
    private partial void LogBackendError(Exception exception);

    [LoggerMessage(23, LogLevel.Information, "Leader election: backend reachable again")]
    private partial void LogBackendRecovered();
}
