using Conveyor.Backends;

namespace Conveyor.Testing;

/// <summary>
/// A backend that keeps everything in this process's memory and plays every role: queue, store, coordination and
/// notifier. It is the reference state machine (docs/state_machine.md), written plainly under one lock and exact: it
/// passes the whole conformance suite, and takes every time it compares or records from the <see cref="TimeProvider"/>
/// it is given, so tests can drive it with a fake clock. For tests and for trying Conveyor out; nothing survives the
/// process.
/// </summary>
/// <remarks>
/// Instances built over one <see cref="InMemoryStorage"/> share their tasks and notifications, like processes sharing
/// a database. Ready notifications (the queue's name on <see cref="NotifierChannels.Ready"/>) follow every change that
/// makes work ready: enqueue, release, queue resume, promotion, requeue of an expired lease and manual retry.
/// </remarks>
public sealed partial class InMemoryBackend : IConveyorBackend, IQueueBackend, ITaskStore, ICoordinationBackend, IScheduleStore, IUniqueKeyStore
{
    private readonly InMemoryStorage _storage;
    private readonly TimeProvider _time;

    /// <summary>Creates a backend on storage of its own.</summary>
    /// <param name="time">The clock of every time compared or recorded; <see cref="TimeProvider.System"/> when null.</param>
    public InMemoryBackend(TimeProvider? time = null)
        : this(new InMemoryStorage(), time)
    {
    }

    /// <summary>Creates a backend over <paramref name="storage"/>, which other instances may share.</summary>
    /// <param name="storage">The tasks, queues, workers and notifier this instance works on.</param>
    /// <param name="time">The clock of every time compared or recorded; <see cref="TimeProvider.System"/> when null.</param>
    public InMemoryBackend(InMemoryStorage storage, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(storage);
        _storage = storage;
        _time = time ?? TimeProvider.System;
    }

    /// <summary>The state this instance works on; pass it to another instance to share it.</summary>
    public InMemoryStorage Storage => _storage;

    /// <inheritdoc />
    public string Name => "memory";

    /// <inheritdoc />
    public IQueueBackend Queue => this;

    /// <inheritdoc />
    public ITaskStore Store => this;

    /// <inheritdoc />
    public ICoordinationBackend Coordination => this;

    /// <inheritdoc />
    public IScheduleStore Schedules => this;

    /// <inheritdoc />
    public IUniqueKeyStore UniqueKeys => this;

    /// <inheritdoc />
    public INotifier Notifier => _storage.Notifier;

    /// <summary>One process; not durable. Notifications reach every instance sharing the storage, and every such
    /// instance is in this process, so no worker ever depends on its fallback poll: that is what
    /// <see cref="BackendCapabilities.CrossProcessNotifications"/> promises.</summary>
    public BackendCapabilities Capabilities { get; } = new()
    {
        Reach = BackendReach.Process,
        CrossProcessNotifications = true,
        MaxNotificationPayload = InProcessNotifier.MaxPayload,
        Durable = false,
        // The fetch reads every queue under one lock.
        ShortFetchMeansEmpty = true,
    };

    /// <summary>Nothing to create: does nothing.</summary>
    public Task MigrateAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>Always healthy.</summary>
    public Task<BackendHealth> CheckHealthAsync(CancellationToken cancellationToken) =>
        Task.FromResult(new BackendHealth(true, "in memory (not durable)"));

    private DateTimeOffset Now() => _time.GetUtcNow();
}
