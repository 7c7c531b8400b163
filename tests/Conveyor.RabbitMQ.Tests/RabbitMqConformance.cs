using Conveyor.Conformance;

namespace Conveyor.RabbitMQ.Tests;

// Every conformance suite but one, run on RabbitMQ as the queue beside a SQLite store (an exchange and queue prefix and a
// fresh file per test: RabbitMqTestBackend), with no capability gate. One line per suite: xunit 2 runs only concrete
// classes, so a generic suite needs a class that names its factory (docs/conformance.md). A partial class adds
// RabbitMQ's own notifier tests (RabbitMqNotifierTests.cs).

public sealed class RabbitMqQueueEnqueueTests : QueueEnqueueConformance<RabbitMqTestBackend>;

public sealed class RabbitMqQueueFetchTests : QueueFetchConformance<RabbitMqTestBackend>;

public sealed class RabbitMqQueueLeaseTests : QueueLeaseConformance<RabbitMqTestBackend>;

public sealed class RabbitMqQueueAttemptTests : QueueAttemptConformance<RabbitMqTestBackend>;

public sealed class RabbitMqQueueScheduleTests : QueueScheduleConformance<RabbitMqTestBackend>;

public sealed class RabbitMqQueueCancelRetryTests : QueueCancelRetryConformance<RabbitMqTestBackend>;

public sealed class RabbitMqQueueWaitTests : QueueWaitConformance<RabbitMqTestBackend>;

public sealed class RabbitMqStoreTests : StoreConformance<RabbitMqTestBackend>;

public sealed class RabbitMqStoreListTests : StoreListConformance<RabbitMqTestBackend>;

public sealed class RabbitMqBulkTaskTests : BulkTaskConformance<RabbitMqTestBackend>;

public sealed class RabbitMqCoordinationTests : CoordinationConformance<RabbitMqTestBackend>;

public sealed class RabbitMqLeadershipTests : LeadershipConformance<RabbitMqTestBackend>;

public sealed class RabbitMqScheduleTests : ScheduleConformance<RabbitMqTestBackend>;

public sealed class RabbitMqUniqueKeyTests : UniqueKeyConformance<RabbitMqTestBackend>;
public sealed class RabbitMqApiKeyTests : ApiKeyConformance<RabbitMqTestBackend>;
public sealed class RabbitMqPayloadRewriteTests : PayloadRewriteConformance<RabbitMqTestBackend>;
public sealed class RabbitMqAuditLogTests : AuditLogConformance<RabbitMqTestBackend>;
public sealed class RabbitMqUserStoreTests : UserStoreConformance<RabbitMqTestBackend>;
public sealed class RabbitMqAuditRetentionTests : AuditRetentionConformance<RabbitMqTestBackend>;

public sealed class RabbitMqWorkflowTests : WorkflowConformance<RabbitMqTestBackend>;

public sealed class RabbitMqLimitTests : LimitConformance<RabbitMqTestBackend>;

public sealed partial class RabbitMqNotifierTests : NotifierConformance<RabbitMqTestBackend>;

// RetentionConformance is not registered: retention is the store role's, and the store here is the paired SQLite
// backend, whose retention SqliteRetentionTests (tests/Conveyor.Sqlite.Tests) already runs on 200,000 tasks. Here it
// would add only those tasks' trip through the broker before the measured minute starts.
