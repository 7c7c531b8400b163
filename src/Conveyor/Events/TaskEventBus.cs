using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Conveyor;

/// <summary>
/// The in-process bus of task events: the worker and the client raise them, observers (<see cref="ITaskEventObserver"/>)
/// and subscribers (the event stream, the bridge to other processes) receive them. With nothing listening, raising an
/// event costs a check of <see cref="IsObserved"/>: callers build events only when it is true.
/// </summary>
public sealed partial class TaskEventBus
{
    private readonly ITaskEventObserver[] _observers;
    private readonly ILogger _logger;
    private readonly ConveyorMetrics? _metrics;
    // Copy on write: publishing reads a snapshot without a lock; subscribing is rare.
    private Subscription[] _subscriptions = [];
    private WorkflowSubscription[] _workflowSubscriptions = [];
    private readonly Lock _gate = new();
    // The ends delivered lately (workflow, kind, time): a subscriber sees an end once even when two processes raise it.
    private readonly HashSet<(Guid, WorkflowEventKind, DateTimeOffset)> _recentEnds = [];
    private readonly Queue<(Guid, WorkflowEventKind, DateTimeOffset)> _recentEndsOrder = new();

    /// <summary>Most workflow ends remembered to drop a second report of one.</summary>
    internal const int RecentEndsRemembered = 4096;

    /// <summary>Creates the bus with the registered observers.</summary>
    public TaskEventBus(IEnumerable<ITaskEventObserver> observers, ILogger<TaskEventBus>? logger = null)
        : this(observers, logger, null)
    {
    }

    /// <summary>The bus with the metrics it records events on while a listener enables them.</summary>
    internal TaskEventBus(IEnumerable<ITaskEventObserver> observers, ILogger<TaskEventBus>? logger, ConveyorMetrics? metrics)
    {
        ArgumentNullException.ThrowIfNull(observers);
        _observers = observers.ToArray();
        _logger = logger ?? (ILogger)NullLogger.Instance;
        _metrics = metrics;
    }

    /// <summary>How many subscriptions want other processes' events too: while there are any, the bridge asks the other
    /// processes to send theirs.</summary>
    public int RemoteSubscribers =>
        Volatile.Read(ref _subscriptions).Count(s => s.IncludeRemote) + Volatile.Read(ref _workflowSubscriptions).Count(s => s.IncludeRemote);

    /// <summary>Called with the workflow of each step whose task event this process raises as it ends (succeeded, dead,
    /// cancelled, expired) or asks for a retry (a step that the retried steps of its workflow hold back goes back to pending
    /// instead, which ends its workflow when nothing else is active: docs/workflows.md, Retry): the
    /// <see cref="Workflows.WorkflowEndProbe"/> reads whether the workflow ended with it.</summary>
    internal Action<Guid>? StepEnded { get; set; }

    /// <summary>Completes at the next change of <see cref="RemoteSubscribers"/>.</summary>
    internal Task RemoteInterestChanged => _remoteInterestChanged.Task;

    private volatile TaskCompletionSource _remoteInterestChanged = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Whether anything receives this process's events: build them only then.</summary>
    public bool IsObserved => HasSubscribers || (_metrics?.Enabled ?? false);

    /// <summary>Whether observers or subscribers receive events: when only the metrics listen, callers record on
    /// <see cref="ListenedMetrics"/> without building an event.</summary>
    internal bool HasSubscribers =>
        _observers.Length > 0 || Volatile.Read(ref _subscriptions).Length > 0 || Volatile.Read(ref _workflowSubscriptions).Length > 0;

    /// <summary>Whether anything receives workflow events: build them only then.</summary>
    public bool IsWorkflowObserved => Volatile.Read(ref _workflowSubscriptions).Length > 0;

    /// <summary>The metrics, while a listener enables them; else null.</summary>
    internal ConveyorMetrics? ListenedMetrics => _metrics is { Enabled: true } metrics ? metrics : null;

    /// <summary>Raises an event of this process: observers and every subscriber receive it.</summary>
    public void Publish(TaskEvent taskEvent)
    {
        ArgumentNullException.ThrowIfNull(taskEvent);
        if (_metrics is { Enabled: true } metrics)
        {
            metrics.Record(taskEvent);
        }
        foreach (var observer in _observers)
        {
            try
            {
                observer.OnEvent(taskEvent);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                LogObserverFailed(ex, observer.GetType().Name, taskEvent.Kind, taskEvent.TaskId);
            }
        }
        Deliver(taskEvent, remote: false);
        if (taskEvent.WorkflowId is { } workflowId
            && taskEvent.Kind is TaskEventKind.Succeeded or TaskEventKind.Dead or TaskEventKind.Cancelled or TaskEventKind.Expired or TaskEventKind.Retrying
            && StepEnded is { } stepEnded)
        {
            stepEnded(workflowId);
        }
    }

    /// <summary>Raises a workflow event of this process: workflow subscribers receive it (an end they saw already, raised
    /// by another process too, is dropped).</summary>
    public void PublishWorkflow(WorkflowEvent workflowEvent)
    {
        ArgumentNullException.ThrowIfNull(workflowEvent);
        DeliverWorkflow(workflowEvent, remote: false);
    }

    /// <summary>Passes on a workflow event raised by another process (from the bridge) to the subscribers that asked for
    /// remote events.</summary>
    public void PublishRemoteWorkflow(WorkflowEvent workflowEvent)
    {
        ArgumentNullException.ThrowIfNull(workflowEvent);
        DeliverWorkflow(workflowEvent, remote: true);
    }

    /// <summary>Calls <paramref name="handler"/> for each workflow event of this process, and of every other process on the
    /// backend when <paramref name="includeRemote"/>; disposing the result ends it. The handler runs in line: quick,
    /// non-blocking, not throwing. While any is subscribed, step events are built and ends are looked for.</summary>
    public IDisposable SubscribeWorkflows(Action<WorkflowEvent> handler, bool includeRemote = false)
    {
        ArgumentNullException.ThrowIfNull(handler);
        var subscription = new WorkflowSubscription(this, handler, includeRemote);
        lock (_gate)
        {
            _workflowSubscriptions = [.. _workflowSubscriptions, subscription];
        }
        if (includeRemote)
        {
            SignalRemoteInterest();
        }
        return subscription;
    }

    private void DeliverWorkflow(WorkflowEvent workflowEvent, bool remote)
    {
        if (workflowEvent.IsEnd && !FirstReportOfEnd(workflowEvent))
        {
            return;
        }
        foreach (var subscription in Volatile.Read(ref _workflowSubscriptions))
        {
            if (remote && !subscription.IncludeRemote)
            {
                continue;
            }
            try
            {
                subscription.Handler(workflowEvent);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                LogWorkflowObserverFailed(ex, workflowEvent.Kind, workflowEvent.WorkflowId);
            }
        }
    }

    private bool FirstReportOfEnd(WorkflowEvent workflowEvent)
    {
        var key = (workflowEvent.WorkflowId, workflowEvent.Kind, workflowEvent.At);
        lock (_recentEnds)
        {
            if (!_recentEnds.Add(key))
            {
                return false;
            }
            _recentEndsOrder.Enqueue(key);
            if (_recentEndsOrder.Count > RecentEndsRemembered)
            {
                _recentEnds.Remove(_recentEndsOrder.Dequeue());
            }
            return true;
        }
    }

    /// <summary>Passes on an event raised by another process (from the bridge): subscribers that asked for remote events
    /// receive it; observers do not (each process's observers see their own process's events, as Celery's signals do).</summary>
    public void PublishRemote(TaskEvent taskEvent)
    {
        ArgumentNullException.ThrowIfNull(taskEvent);
        Deliver(taskEvent, remote: true);
    }

    /// <summary>Calls <paramref name="handler"/> for each event of this process, and of every other process on the
    /// backend when <paramref name="includeRemote"/> (those arrive through the notifier while some subscriber wants them);
    /// disposing the result ends it. The handler runs in line: quick, non-blocking, not throwing.</summary>
    public IDisposable Subscribe(Action<TaskEvent> handler, bool includeRemote = false)
    {
        ArgumentNullException.ThrowIfNull(handler);
        var subscription = new Subscription(this, handler, includeRemote);
        lock (_gate)
        {
            _subscriptions = [.. _subscriptions, subscription];
        }
        if (includeRemote)
        {
            SignalRemoteInterest();
        }
        return subscription;
    }

    private void Deliver(TaskEvent taskEvent, bool remote)
    {
        foreach (var subscription in Volatile.Read(ref _subscriptions))
        {
            if (remote && !subscription.IncludeRemote)
            {
                continue;
            }
            try
            {
                subscription.Handler(taskEvent);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                LogObserverFailed(ex, "subscriber", taskEvent.Kind, taskEvent.TaskId);
            }
        }
    }

    private void Remove(Subscription subscription)
    {
        lock (_gate)
        {
            _subscriptions = _subscriptions.Where(s => !ReferenceEquals(s, subscription)).ToArray();
        }
        if (subscription.IncludeRemote)
        {
            SignalRemoteInterest();
        }
    }

    private void Remove(WorkflowSubscription subscription)
    {
        lock (_gate)
        {
            _workflowSubscriptions = _workflowSubscriptions.Where(s => !ReferenceEquals(s, subscription)).ToArray();
        }
        if (subscription.IncludeRemote)
        {
            SignalRemoteInterest();
        }
    }

    private void SignalRemoteInterest() =>
        Interlocked.Exchange(ref _remoteInterestChanged, new(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();

    private sealed class WorkflowSubscription(TaskEventBus bus, Action<WorkflowEvent> handler, bool includeRemote) : IDisposable
    {
        public Action<WorkflowEvent> Handler { get; } = handler;
        public bool IncludeRemote { get; } = includeRemote;
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                bus.Remove(this);
            }
        }
    }

    private sealed class Subscription(TaskEventBus bus, Action<TaskEvent> handler, bool includeRemote) : IDisposable
    {
        public Action<TaskEvent> Handler { get; } = handler;
        public bool IncludeRemote { get; } = includeRemote;
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                bus.Remove(this);
            }
        }
    }

    [LoggerMessage(60, LogLevel.Warning, "Task event observer {Observer} failed on {Kind} of task {TaskId}")]
    private partial void LogObserverFailed(Exception exception, string observer, TaskEventKind kind, Guid taskId);

    [LoggerMessage(61, LogLevel.Warning, "Workflow event subscriber failed on {Kind} of workflow {WorkflowId}")]
    private partial void LogWorkflowObserverFailed(Exception exception, WorkflowEventKind kind, Guid workflowId);
}
