using Conveyor.Conformance;

namespace Conveyor.Postgres.Tests;

// Every conformance suite, run on PostgreSQL (a fresh schema per test: PostgresTestBackend). One line per suite: xunit 2
// runs only concrete classes, so a generic suite needs a class that names its factory (docs/conformance.md).

public sealed class PostgresQueueEnqueueTests : QueueEnqueueConformance<PostgresTestBackend>;

public sealed class PostgresQueueFetchTests : QueueFetchConformance<PostgresTestBackend>;

public sealed class PostgresQueueLeaseTests : QueueLeaseConformance<PostgresTestBackend>;

public sealed class PostgresQueueAttemptTests : QueueAttemptConformance<PostgresTestBackend>;

public sealed class PostgresQueueScheduleTests : QueueScheduleConformance<PostgresTestBackend>;

public sealed class PostgresQueueCancelRetryTests : QueueCancelRetryConformance<PostgresTestBackend>;

public sealed class PostgresQueueWaitTests : QueueWaitConformance<PostgresTestBackend>;

public sealed class PostgresStoreTests : StoreConformance<PostgresTestBackend>;

public sealed class PostgresStoreListTests : StoreListConformance<PostgresTestBackend>;

public sealed class PostgresBulkTaskTests : BulkTaskConformance<PostgresTestBackend>;

public sealed class PostgresCoordinationTests : CoordinationConformance<PostgresTestBackend>;

public sealed class PostgresLeadershipTests : LeadershipConformance<PostgresTestBackend>;

public sealed class PostgresScheduleTests : ScheduleConformance<PostgresTestBackend>;

public sealed class PostgresUniqueKeyTests : UniqueKeyConformance<PostgresTestBackend>;

public sealed class PostgresLimitTests : LimitConformance<PostgresTestBackend>;

public sealed class PostgresNotifierTests : NotifierConformance<PostgresTestBackend>;

public sealed class PostgresRetentionTests : RetentionConformance<PostgresTestBackend>;
