using Conveyor.Conformance;

namespace Conveyor.Postgres.Tests;

// Every conformance suite, run on PostgreSQL (a fresh schema per test: PostgresTestBackend). One line per suite: xunit 2
// runs only concrete classes, so a generic suite needs a class that names its factory (docs/conformance.md).

public sealed class PostgresQueueEnqueueTests : QueueEnqueueConformance<PostgresTestBackend>;

public sealed class PostgresQueueFetchTests : QueueFetchConformance<PostgresTestBackend>;

public sealed class PostgresFetchSharedHeadersTests : FetchSharedHeadersConformance<PostgresTestBackend>;

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
public sealed class PostgresApiKeyTests : ApiKeyConformance<PostgresTestBackend>;
public sealed class PostgresPayloadRewriteTests : PayloadRewriteConformance<PostgresTestBackend>;
public sealed class PostgresAuditLogTests : AuditLogConformance<PostgresTestBackend>;
public sealed class PostgresUserStoreTests : UserStoreConformance<PostgresTestBackend>;
public sealed class PostgresAuditRetentionTests : AuditRetentionConformance<PostgresTestBackend>;

public sealed class PostgresWorkflowTests : WorkflowConformance<PostgresTestBackend>;

public sealed class PostgresLimitTests : LimitConformance<PostgresTestBackend>;

public sealed class PostgresNotifierTests : NotifierConformance<PostgresTestBackend>;

public sealed class PostgresRetentionTests : RetentionConformance<PostgresTestBackend>;

// The same suites on the app's own data source, as UsePostgresFromServices runs (PostgresAppDataSourceTestBackend: its
// search_path names no schema of Conveyor's). RetentionConformance is left out: its 200,000-task fill
// costs most of a minute, and retention's statement is pinned on this data source by StoreConformance's purge tests.

public sealed class PostgresAppDataSourceQueueEnqueueTests : QueueEnqueueConformance<PostgresAppDataSourceTestBackend>;

public sealed class PostgresAppDataSourceQueueFetchTests : QueueFetchConformance<PostgresAppDataSourceTestBackend>;

public sealed class PostgresAppDataSourceQueueLeaseTests : QueueLeaseConformance<PostgresAppDataSourceTestBackend>;

public sealed class PostgresAppDataSourceQueueAttemptTests : QueueAttemptConformance<PostgresAppDataSourceTestBackend>;

public sealed class PostgresAppDataSourceQueueScheduleTests : QueueScheduleConformance<PostgresAppDataSourceTestBackend>;

public sealed class PostgresAppDataSourceQueueCancelRetryTests : QueueCancelRetryConformance<PostgresAppDataSourceTestBackend>;

public sealed class PostgresAppDataSourceQueueWaitTests : QueueWaitConformance<PostgresAppDataSourceTestBackend>;

public sealed class PostgresAppDataSourceStoreTests : StoreConformance<PostgresAppDataSourceTestBackend>;

public sealed class PostgresAppDataSourceStoreListTests : StoreListConformance<PostgresAppDataSourceTestBackend>;

public sealed class PostgresAppDataSourceBulkTaskTests : BulkTaskConformance<PostgresAppDataSourceTestBackend>;

public sealed class PostgresAppDataSourceCoordinationTests : CoordinationConformance<PostgresAppDataSourceTestBackend>;

public sealed class PostgresAppDataSourceLeadershipTests : LeadershipConformance<PostgresAppDataSourceTestBackend>;

public sealed class PostgresAppDataSourceScheduleTests : ScheduleConformance<PostgresAppDataSourceTestBackend>;

public sealed class PostgresAppDataSourceUniqueKeyTests : UniqueKeyConformance<PostgresAppDataSourceTestBackend>;

public sealed class PostgresAppDataSourceWorkflowTests : WorkflowConformance<PostgresAppDataSourceTestBackend>;

public sealed class PostgresAppDataSourceLimitTests : LimitConformance<PostgresAppDataSourceTestBackend>;

public sealed class PostgresAppDataSourceNotifierTests : NotifierConformance<PostgresAppDataSourceTestBackend>;
