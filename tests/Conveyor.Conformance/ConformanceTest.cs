using Microsoft.Extensions.Time.Testing;

namespace Conveyor.Conformance;

/// <summary>
/// Base of every conformance suite. A suite is generic over an <see cref="IConformanceBackendFactory"/>; a backend's
/// test project registers each suite in one line with its factory, which says only how to build a clean backend. The
/// suite defines the behaviour.
/// </summary>
/// <remarks>
/// Each test gets its own backend (xunit makes a new instance of the class per test), so tests may
/// run in parallel. Unless a suite asks for the system clock, the backend runs on a
/// <see cref="FakeTimeProvider"/> that only moves when a test calls <see cref="Advance"/>: lease
/// expiry, ETAs and retry times are tested without waiting. A backend must take every time it
/// compares (lease expiry, not-before, leader expiry) from the <see cref="TimeProvider"/> it was built with.
/// </remarks>
public abstract class ConformanceTest : IAsyncLifetime, IDisposable
{
    /// <summary>The worker id used by fetches that name no other.</summary>
    protected const string WorkerId = "worker-1";

    /// <summary>Lease length of fetches that name no other: 30 s.</summary>
    protected static readonly TimeSpan LeaseDuration = TimeSpan.FromSeconds(30);

    /// <summary>A <c>traceparent</c> in W3C version 00's canonical form, which the stores keep as its 25 bytes
    /// (<see cref="Conveyor.Backends.StoredHeaders"/>).</summary>
    protected const string CanonicalTraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    /// <summary>The same headers, in any order: a store that keeps the trace context apart gives it back after the
    /// others, whatever its place in the map it was given.</summary>
    protected static void AssertSameHeaders(IReadOnlyDictionary<string, string>? expected, IReadOnlyDictionary<string, string>? actual)
    {
        Assert.Equal(expected is null, actual is null);
        Assert.Equal(expected?.OrderBy(h => h.Key, StringComparer.Ordinal), actual?.OrderBy(h => h.Key, StringComparer.Ordinal));
    }

    private readonly IConformanceBackendFactory _factory;
    private readonly List<IConveyorBackend> _backends = [];
    private readonly List<IConveyorBackend> _peers = [];
    private readonly List<string> _fallbacks = [];
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(60));
    private IConveyorBackend? _backend;

    /// <summary>Runs the suite on backends from <paramref name="factory"/>, on <paramref name="time"/> or, when null, on
    /// a fake clock that starts now (whole milliseconds) and stands still.</summary>
    protected ConformanceTest(IConformanceBackendFactory factory, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(factory);
        _factory = factory;
        // Whole milliseconds: every backend can store such a time exactly, so tests may compare times with ==.
        Time = time ?? new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()));
    }

    /// <summary>The clock the backend runs on.</summary>
    protected TimeProvider Time { get; }

    /// <summary>The fake clock; throws when the suite runs on the system clock.</summary>
    protected FakeTimeProvider FakeTime =>
        Time as FakeTimeProvider ?? throw new InvalidOperationException("This suite runs on the system clock.");

    /// <summary>Now, on the backend's clock.</summary>
    protected DateTimeOffset Now => Time.GetUtcNow();

    /// <summary>The backend of this test.</summary>
    protected IConveyorBackend Backend => _backend ?? throw new InvalidOperationException("InitializeAsync has not run.");

    /// <summary>The queue role of <see cref="Backend"/>.</summary>
    protected IQueueBackend Queue => Backend.Queue;

    /// <summary>The store role of <see cref="Backend"/>.</summary>
    protected ITaskStore Store => Backend.Store;

    /// <summary>The coordination role of <see cref="Backend"/>.</summary>
    protected ICoordinationBackend Coordination => Backend.Coordination;

    /// <summary>A token that ends a test that hangs: it fires 60 s after the test starts.</summary>
    protected CancellationToken Timeout => _timeout.Token;

    /// <inheritdoc />
    public async Task InitializeAsync() => _backend = await NewBackendAsync(Time);

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        foreach (var peer in _peers)
        {
            await _factory.DisposePeerAsync(peer);
        }
        _peers.Clear();
        foreach (var backend in _backends)
        {
            await _factory.DisposeAsync(backend);
        }
        _backends.Clear();
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases the test's timeout; backends are released by <see cref="DisposeAsync"/>.</summary>
    protected virtual void Dispose(bool disposing)
    {
        if (disposing)
        {
            _timeout.Dispose();
        }
    }

    /// <summary>Builds another instance on <see cref="Backend"/>'s storage, disposed with the test (before the backend
    /// whose storage it shares).</summary>
    protected async Task<IConveyorBackend> NewPeerAsync()
    {
        var peer = await _factory.CreatePeerAsync(Backend, Time);
        _peers.Add(peer);
        return peer;
    }

    /// <summary>Builds another backend, disposed with the test.</summary>
    protected async Task<IConveyorBackend> NewBackendAsync(TimeProvider time)
    {
        var backend = await _factory.CreateAsync(time);
        _backends.Add(backend);
        return backend;
    }

    /// <summary>
    /// A capability gate: <paramref name="whenCapable"/> when the backend has the capability a test needs, else
    /// <paramref name="fallback"/>, which gives the test what it asserts on instead: the behaviour the backend documents
    /// without that capability. A gated test therefore passes or fails on every backend; nothing is skipped.
    /// </summary>
    /// <param name="capable">The capability, read from <see cref="IConveyorBackend.Capabilities"/>.</param>
    /// <param name="reason">Why a backend may lack it and what it does instead, written at the gate; recorded in
    /// <see cref="Fallbacks"/> when the fallback is taken.</param>
    /// <param name="whenCapable">What the test uses when the backend has the capability.</param>
    /// <param name="fallback">What it uses instead.</param>
    protected T Gate<T>(bool capable, string reason, Func<T> whenCapable, Func<T> fallback)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(reason);
        ArgumentNullException.ThrowIfNull(whenCapable);
        ArgumentNullException.ThrowIfNull(fallback);
        if (capable)
        {
            return whenCapable();
        }
        _fallbacks.Add(reason);
        return fallback();
    }

    /// <summary>The reasons of the gates this test passed through on their fallback, in order.</summary>
    protected IReadOnlyList<string> Fallbacks => _fallbacks;

    /// <summary>Moves the fake clock forward.</summary>
    protected void Advance(TimeSpan by) => FakeTime.Advance(by);

    /// <summary>A message created now, ready at once, with 5 attempts.</summary>
    protected TaskMessage NewMessage(string queue = QueueNames.Default, int priority = 0, string task = "test.task") => new()
    {
        Id = Guid.CreateVersion7(Now),
        Task = task,
        Queue = queue,
        Priority = priority,
        CreatedAt = Now,
    };

    /// <summary>Enqueues one message and returns its result.</summary>
    protected async Task<EnqueueResult> EnqueueAsync(TaskMessage message)
    {
        var results = await Queue.EnqueueAsync([message], Timeout);
        return Assert.Single(results);
    }

    /// <summary>Enqueues <paramref name="count"/> new messages in one batch and returns their ids in order.</summary>
    protected async Task<List<Guid>> EnqueueManyAsync(int count, string queue = QueueNames.Default, int priority = 0)
    {
        var messages = Enumerable.Range(0, count).Select(_ => NewMessage(queue, priority)).ToList();
        var results = await Queue.EnqueueAsync(messages, Timeout);
        return results.Select(r => r.Id).ToList();
    }

    /// <summary>Fetches up to <paramref name="max"/> ready messages at once (no wait) from the given queues, in order, strictly.</summary>
    protected Task<IReadOnlyList<Lease>> FetchAsync(int max = 100, params string[] queues) =>
        Queue.FetchAsync(Request(max, queues), Timeout);

    /// <summary>Fetches exactly one message, failing the test when none or more is ready.</summary>
    protected async Task<Lease> FetchOneAsync(params string[] queues) => Assert.Single(await FetchAsync(1, queues));

    /// <summary>Fetches exactly one message and records its handler's start, as a worker does before it runs it.</summary>
    protected async Task<Lease> FetchStartedAsync(params string[] queues)
    {
        var lease = await FetchOneAsync(queues);
        Assert.Empty(await Queue.StartAsync([lease.Ref], Timeout));
        return lease;
    }

    /// <summary>Moves the clock past <see cref="LeaseDuration"/> and lets the reaper requeue what ran out; returns how many.</summary>
    protected async Task<int> ExpireLeasesAsync()
    {
        Advance(LeaseDuration + TimeSpan.FromSeconds(1));
        return (await Queue.RequeueExpiredLeasesAsync(Timeout)).Count;
    }

    /// <summary>A fetch request without wait, strict order over <paramref name="queues"/> (<c>default</c> when none).</summary>
    protected static FetchRequest Request(int max, params string[] queues) => new()
    {
        WorkerId = WorkerId,
        Queues = (queues.Length == 0 ? [QueueNames.Default] : queues).Select(q => new QueueWeight(q)).ToList(),
        MaxCount = max,
        LeaseDuration = LeaseDuration,
        StrictOrder = true,
    };

    /// <summary>Settles one attempt as succeeded; returns what the backend did not settle as asked.</summary>
    protected Task<IReadOnlyList<CompletionOverride>> SucceedAsync(Lease lease, string? result = null) =>
        Queue.CompleteAsync([Completion(lease, CompletionKind.Succeeded) with { Result = result }], Timeout);

    /// <summary>Settles one attempt as failed, to run again at <paramref name="retryAt"/>; returns what the backend did not
    /// settle as asked.</summary>
    protected Task<IReadOnlyList<CompletionOverride>> RetryAtAsync(Lease lease, DateTimeOffset retryAt, TaskError? error = null) =>
        Queue.CompleteAsync([Completion(lease, CompletionKind.Retry) with { RetryAt = retryAt, Error = error ?? Error(lease) }], Timeout);

    /// <summary>Settles one attempt as failed for good; returns what the backend did not settle as asked.</summary>
    protected Task<IReadOnlyList<CompletionOverride>> DeadAsync(Lease lease, TaskError? error = null) =>
        Queue.CompleteAsync([Completion(lease, CompletionKind.Dead) with { Error = error ?? Error(lease) }], Timeout);

    /// <summary>A completion of <paramref name="lease"/>'s attempt, now.</summary>
    protected Completion Completion(Lease lease, CompletionKind kind) =>
        new() { Lease = lease.Ref, Kind = kind, Attempt = lease.Attempt, At = Now };

    /// <summary>An error naming the attempt it failed.</summary>
    protected static TaskError Error(Lease lease) =>
        new("Test.Failure", $"attempt {lease.Attempt} failed", "detail of attempt " + lease.Attempt);

    /// <summary>The stored task, failing the test when it is unknown.</summary>
    protected async Task<TaskRecord> GetAsync(Guid id)
    {
        var record = await Store.GetAsync(id, Timeout);
        Assert.NotNull(record);
        return record;
    }

    /// <summary>The stored state of a task.</summary>
    protected async Task<TaskState> StateOf(Guid id) => (await GetAsync(id)).State;
}
