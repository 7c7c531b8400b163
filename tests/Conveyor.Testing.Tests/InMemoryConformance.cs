using Conveyor.Backends;
using Conveyor.Conformance;

namespace Conveyor.Testing.Tests;

// Every conformance suite, run on the in-memory backend with no capability gate: it is the reference state machine.
// One line per suite: xunit 2 runs only concrete classes, so a generic suite needs a class that names its factory
// (docs/conformance.md).

public sealed class InMemoryQueueEnqueueTests : QueueEnqueueConformance<InMemoryTestBackend>;

public sealed class InMemoryQueueFetchTests : QueueFetchConformance<InMemoryTestBackend>;

public sealed class InMemoryQueueLeaseTests : QueueLeaseConformance<InMemoryTestBackend>;

public sealed class InMemoryQueueAttemptTests : QueueAttemptConformance<InMemoryTestBackend>;

public sealed class InMemoryQueueScheduleTests : QueueScheduleConformance<InMemoryTestBackend>;

public sealed class InMemoryQueueCancelRetryTests : QueueCancelRetryConformance<InMemoryTestBackend>;

public sealed class InMemoryQueueWaitTests : QueueWaitConformance<InMemoryTestBackend>;

public sealed class InMemoryStoreTests : StoreConformance<InMemoryTestBackend>;

public sealed class InMemoryStoreListTests : StoreListConformance<InMemoryTestBackend>;

public sealed class InMemoryBulkTaskTests : BulkTaskConformance<InMemoryTestBackend>;

public sealed class InMemoryCoordinationTests : CoordinationConformance<InMemoryTestBackend>;

public sealed class InMemoryLeadershipTests : LeadershipConformance<InMemoryTestBackend>;

public sealed class InMemoryScheduleTests : ScheduleConformance<InMemoryTestBackend>;

public sealed class InMemoryUniqueKeyTests : UniqueKeyConformance<InMemoryTestBackend>;
public sealed class InMemoryApiKeyTests : ApiKeyConformance<InMemoryTestBackend>;
public sealed class InMemoryPayloadRewriteTests : PayloadRewriteConformance<InMemoryTestBackend>;
public sealed class InMemoryAuditLogTests : AuditLogConformance<InMemoryTestBackend>;
public sealed class InMemoryUserStoreTests : UserStoreConformance<InMemoryTestBackend>;
public sealed class InMemoryAuditRetentionTests : AuditRetentionConformance<InMemoryTestBackend>;
public sealed class InMemoryWorkflowTests : WorkflowConformance<InMemoryTestBackend>;

public sealed class InMemoryLimitTests : LimitConformance<InMemoryTestBackend>;

public sealed class InMemoryNotifierTests : NotifierConformance<InMemoryTestBackend>;

// Cheap here (200,000 tasks in memory): the leader-only retention service keeps pace on the reference backend too.
public sealed class InMemoryRetentionTests : RetentionConformance<InMemoryTestBackend>;

// The notifier suite once more, on in-memory backends that say they have no cross-process notifications: every real
// backend on Linux has them, so only this registration takes the fallback side of the suite's capability gate.
public sealed class InMemoryWithoutCrossProcessNotificationsTests : NotifierConformance<InMemoryWithoutCrossProcessNotifications>
{
    [Fact]
    public async Task The_gate_gives_the_tests_between_two_instances_this_instance_and_records_why()
    {
        var other = await OtherInstanceAsync();

        Assert.Same(Backend, other);
        Assert.Contains("no Unix datagram sockets", Assert.Single(Fallbacks), StringComparison.Ordinal);
    }
}

/// <summary>Builds in-memory backends; a peer is another instance over the same storage, as another process would open
/// the same database.</summary>
public sealed class InMemoryTestBackend : IConformanceBackendFactory
{
    public Task<IConveyorBackend> CreateAsync(TimeProvider time) => Task.FromResult<IConveyorBackend>(new InMemoryBackend(time));

    public Task<IConveyorBackend> CreatePeerAsync(IConveyorBackend backend, TimeProvider time) =>
        Task.FromResult<IConveyorBackend>(new InMemoryBackend(((InMemoryBackend)backend).Storage, time));
}

/// <summary>In-memory backends whose capabilities deny cross-process notifications, as SQLite's do on Windows.</summary>
public sealed class InMemoryWithoutCrossProcessNotifications : IConformanceBackendFactory
{
    public Task<IConveyorBackend> CreateAsync(TimeProvider time) => Task.FromResult<IConveyorBackend>(new Backend(new InMemoryBackend(time)));

    public Task<IConveyorBackend> CreatePeerAsync(IConveyorBackend backend, TimeProvider time) =>
        Task.FromResult<IConveyorBackend>(new Backend(new InMemoryBackend(((Backend)backend).Inner.Storage, time)));

    private sealed class Backend(InMemoryBackend inner) : IConveyorBackend
    {
        public InMemoryBackend Inner => inner;

        public string Name => inner.Name;

        public IQueueBackend Queue => inner.Queue;

        public ITaskStore Store => inner.Store;

        public ICoordinationBackend Coordination => inner.Coordination;

        public IScheduleStore Schedules => inner.Schedules;

        public IUniqueKeyStore UniqueKeys => inner.UniqueKeys;

        public INotifier Notifier => inner.Notifier;

        public ILimitStore Limits => inner.Limits;

        public BackendCapabilities Capabilities { get; } = inner.Capabilities with { CrossProcessNotifications = false };

        public Task MigrateAsync(CancellationToken cancellationToken) => inner.MigrateAsync(cancellationToken);

        public Task<BackendHealth> CheckHealthAsync(CancellationToken cancellationToken) => inner.CheckHealthAsync(cancellationToken);
    }
}

// The queue, store and workflow suites once more, through the encrypting wrapper (Conveyor.Encryption): encryption at
// rest changes what is stored, never how the backend behaves.
public sealed class EncryptedInMemoryQueueEnqueueTests : QueueEnqueueConformance<EncryptedInMemoryTestBackend>;

public sealed class EncryptedInMemoryQueueFetchTests : QueueFetchConformance<EncryptedInMemoryTestBackend>;

public sealed class EncryptedInMemoryQueueLeaseTests : QueueLeaseConformance<EncryptedInMemoryTestBackend>;

public sealed class EncryptedInMemoryQueueAttemptTests : QueueAttemptConformance<EncryptedInMemoryTestBackend>;

public sealed class EncryptedInMemoryQueueScheduleTests : QueueScheduleConformance<EncryptedInMemoryTestBackend>;

public sealed class EncryptedInMemoryQueueCancelRetryTests : QueueCancelRetryConformance<EncryptedInMemoryTestBackend>;

public sealed class EncryptedInMemoryStoreTests : StoreConformance<EncryptedInMemoryTestBackend>;

public sealed class EncryptedInMemoryStoreListTests : StoreListConformance<EncryptedInMemoryTestBackend>;

public sealed class EncryptedInMemoryBulkTaskTests : BulkTaskConformance<EncryptedInMemoryTestBackend>;

public sealed class EncryptedInMemoryWorkflowTests : WorkflowConformance<EncryptedInMemoryTestBackend>;

/// <summary>In-memory backends wrapped in <see cref="Conveyor.Encryption.EncryptingBackend"/>, all with one key.</summary>
public sealed class EncryptedInMemoryTestBackend : IConformanceBackendFactory
{
    private static readonly Conveyor.Encryption.PayloadCipher Cipher = new(new Conveyor.Encryption.PayloadKeyRing(
        [new Conveyor.Encryption.PayloadKey("test", System.Security.Cryptography.RandomNumberGenerator.GetBytes(Conveyor.Encryption.PayloadKey.KeyBytes))]));

    public Task<IConveyorBackend> CreateAsync(TimeProvider time) =>
        Task.FromResult<IConveyorBackend>(new Conveyor.Encryption.EncryptingBackend(new InMemoryBackend(time), Cipher));

    public Task<IConveyorBackend> CreatePeerAsync(IConveyorBackend backend, TimeProvider time) =>
        Task.FromResult<IConveyorBackend>(new Conveyor.Encryption.EncryptingBackend(
            new InMemoryBackend(((InMemoryBackend)((Conveyor.Encryption.EncryptingBackend)backend).Inner).Storage, time), Cipher));
}
