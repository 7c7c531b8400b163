using System.Reflection;
using System.Runtime.ExceptionServices;
using Conveyor.Backends;

namespace Conveyor.Tests.Worker;

/// <summary>A backend's roles as they are, except its queue (observed: <see cref="FetchObserver"/>) and, when given, its
/// notifier, its capabilities and what its health check answers.</summary>
internal sealed class WatchedBackend(IConveyorBackend inner, IQueueBackend queue, INotifier? notifier = null, BackendCapabilities? capabilities = null,
    Func<BackendHealth, BackendHealth>? health = null, ICoordinationBackend? coordination = null)
    : IConveyorBackend
{
    public string Name => inner.Name;
    public IQueueBackend Queue => queue;
    public ITaskStore Store => inner.Store;
    public ICoordinationBackend Coordination => coordination ?? inner.Coordination;
    public IScheduleStore Schedules => inner.Schedules;
    public IUniqueKeyStore UniqueKeys => inner.UniqueKeys;
    public INotifier Notifier => notifier ?? inner.Notifier;
    public ILimitStore Limits => inner.Limits;
    public IWorkflowStore? Workflows => inner.Workflows;
    public BackendCapabilities Capabilities => capabilities ?? inner.Capabilities;
    public Task MigrateAsync(CancellationToken cancellationToken) => inner.MigrateAsync(cancellationToken);
    public async Task<BackendHealth> CheckHealthAsync(CancellationToken cancellationToken)
    {
        var answer = await inner.CheckHealthAsync(cancellationToken);
        return health is null ? answer : health(answer);
    }
}

/// <summary>The queue role as it is, except that each fetch is shown to <c>asked</c> (with the fetch's cancellation token:
/// <c>askedWithToken</c>) and runs once the task it returns completes (with no cancellation token when <c>runOn</c> is
/// set, as PostgreSQL's statement runs on once sent), its
/// leases are shown to <c>fetched</c> once it returns, and, when <c>returning</c> is given, reach the worker only once
/// the task that <c>returning</c> gives for them completes (the fetch has read the store, its answer is held).</summary>
public class FetchObserver : DispatchProxy
{
    private IQueueBackend _inner = null!;
    private Func<FetchRequest, CancellationToken, Task>? _asked;
    private Action<IReadOnlyList<Lease>>? _fetched;
    private Func<IReadOnlyList<Lease>, Task>? _returning;
    private bool _runOn;

    internal static IQueueBackend Wrap(IQueueBackend inner, Func<FetchRequest, Task>? asked = null, Action<IReadOnlyList<Lease>>? fetched = null,
        Func<IReadOnlyList<Lease>, Task>? returning = null, bool runOn = false, Func<FetchRequest, CancellationToken, Task>? askedWithToken = null)
    {
        var proxy = Create<IQueueBackend, FetchObserver>();
        var observer = (FetchObserver)(object)proxy;
        observer._inner = inner;
        observer._asked = askedWithToken ?? (asked is null ? null : (request, _) => asked(request));
        observer._fetched = fetched;
        observer._returning = returning;
        observer._runOn = runOn;
        return proxy;
    }

    protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
    {
        var isFetch = targetMethod!.Name == nameof(IQueueBackend.FetchAsync);
        if (isFetch && _asked is { } asked && args?[0] is FetchRequest request)
        {
            var ready = asked(request, args.Length > 1 && args[1] is CancellationToken token ? token : CancellationToken.None);
            if (!ready.IsCompletedSuccessfully)
            {
                return FetchAfterAsync(ready, targetMethod, args);
            }
        }
        if (isFetch && _returning is { } returning)
        {
            return HoldAnswerAsync((Task<IReadOnlyList<Lease>>)Call(targetMethod, args, isFetch)!, returning);
        }
        return Call(targetMethod, args, isFetch);
    }

    private static async Task<IReadOnlyList<Lease>> HoldAnswerAsync(Task<IReadOnlyList<Lease>> fetch, Func<IReadOnlyList<Lease>, Task> returning)
    {
        var leases = await fetch;
        await returning(leases);
        return leases;
    }

    private async Task<IReadOnlyList<Lease>> FetchAfterAsync(Task ready, MethodInfo fetchMethod, object?[] args)
    {
        await ready;
        var fetch = (Task<IReadOnlyList<Lease>>)Call(fetchMethod, _runOn ? [args[0], CancellationToken.None] : args, isFetch: true)!;
        return _returning is { } returning ? await HoldAnswerAsync(fetch, returning) : await fetch;
    }

    private object? Call(MethodInfo targetMethod, object?[]? args, bool isFetch)
    {
        var result = QueueProxy.Forward(_inner, targetMethod, args);
        if (isFetch && _fetched is { } fetched && result is Task<IReadOnlyList<Lease>> fetch)
        {
            _ = fetch.ContinueWith(t =>
            {
                if (t.IsCompletedSuccessfully)
                {
                    fetched(t.Result);
                }
            }, TaskScheduler.Default);
        }
        return result;
    }
}

/// <summary>The queue role as it is, except that once <see cref="Arm"/>ed, the next lease extension of at least the leases
/// asked for waits, with the leases the worker chose to extend, until the test lets it through (<see cref="Release"/>, or
/// 30 s, so that a failed test does not hold the worker's stop); its answer is kept (<see cref="Answered"/>).</summary>
public class ExtensionGate : DispatchProxy
{
    private IQueueBackend _inner = null!;
    // The fewest leases an extension must carry to be held; 0 when not armed.
    private int _armed;

    /// <summary>Set when an armed extension arrived and waits.</summary>
    public TaskCompletionSource Entered { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Lets the waiting extension through to the backend.</summary>
    public TaskCompletionSource Release { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>What the backend answered the held extension.</summary>
    public TaskCompletionSource<LeaseExtension> Answered { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    internal static IQueueBackend Wrap(IQueueBackend inner)
    {
        var proxy = Create<IQueueBackend, ExtensionGate>();
        ((ExtensionGate)(object)proxy)._inner = inner;
        return proxy;
    }

    /// <summary>Holds the next extension of at least <paramref name="leases"/> leases (an earlier heartbeat's snapshot
    /// may have fewer).</summary>
    public void Arm(int leases) => Volatile.Write(ref _armed, Math.Max(1, leases));

    protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
    {
        if (targetMethod!.Name == nameof(IQueueBackend.ExtendLeasesAsync)
            && args![0] is IReadOnlyList<LeaseRef> extended
            && Volatile.Read(ref _armed) is var least and > 0
            && extended.Count >= least
            && Interlocked.CompareExchange(ref _armed, 0, least) == least)
        {
            return HoldAsync(extended, (TimeSpan)args[1]!);
        }
        return QueueProxy.Forward(_inner, targetMethod, args);
    }

    private async Task<LeaseExtension> HoldAsync(IReadOnlyList<LeaseRef> leases, TimeSpan duration)
    {
        Entered.TrySetResult();
        await Release.Task.WaitAsync(TimeSpan.FromSeconds(30));
        // Not the worker's token: it may be stopping by now, and its heartbeat must still hear the answer.
        var answer = await _inner.ExtendLeasesAsync(leases, duration, CancellationToken.None);
        Answered.TrySetResult(answer);
        return answer;
    }
}

/// <summary>What the test proxies of the queue role share: a call passed on to the role they wrap, its exception thrown as
/// the role threw it (not wrapped in reflection's).</summary>
internal static class QueueProxy
{
    internal static object? Forward(IQueueBackend inner, MethodInfo method, object?[]? args)
    {
        try
        {
            return method.Invoke(inner, args);
        }
        catch (TargetInvocationException ex) when (ex.InnerException is not null)
        {
            ExceptionDispatchInfo.Capture(ex.InnerException).Throw();
            throw;
        }
    }
}
