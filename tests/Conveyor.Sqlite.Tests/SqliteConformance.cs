using Conveyor.Conformance;

namespace Conveyor.Sqlite.Tests;

// Every conformance suite, run on SQLite (a fresh file per test: SqliteTestBackend). One line per suite: xunit 2 runs
// only concrete classes, so a generic suite needs a class that names its factory (docs/conformance.md).

public sealed class SqliteQueueEnqueueTests : QueueEnqueueConformance<SqliteTestBackend>;

public sealed class SqliteQueueFetchTests : QueueFetchConformance<SqliteTestBackend>;

public sealed class SqliteFetchSharedHeadersTests : FetchSharedHeadersConformance<SqliteTestBackend>;

public sealed class SqliteQueueLeaseTests : QueueLeaseConformance<SqliteTestBackend>;

public sealed class SqliteQueueAttemptTests : QueueAttemptConformance<SqliteTestBackend>;

public sealed class SqliteQueueScheduleTests : QueueScheduleConformance<SqliteTestBackend>;

public sealed class SqliteQueueCancelRetryTests : QueueCancelRetryConformance<SqliteTestBackend>;

public sealed class SqliteQueueWaitTests : QueueWaitConformance<SqliteTestBackend>;

public sealed class SqliteStoreTests : StoreConformance<SqliteTestBackend>;

public sealed class SqliteStoreListTests : StoreListConformance<SqliteTestBackend>;

public sealed class SqliteBulkTaskTests : BulkTaskConformance<SqliteTestBackend>;

public sealed class SqliteCoordinationTests : CoordinationConformance<SqliteTestBackend>;

public sealed class SqliteLeadershipTests : LeadershipConformance<SqliteTestBackend>;

public sealed class SqliteScheduleTests : ScheduleConformance<SqliteTestBackend>;

public sealed class SqliteUniqueKeyTests : UniqueKeyConformance<SqliteTestBackend>;
public sealed class SqliteApiKeyTests : ApiKeyConformance<SqliteTestBackend>;
public sealed class SqlitePayloadRewriteTests : PayloadRewriteConformance<SqliteTestBackend>;
public sealed class SqliteAuditLogTests : AuditLogConformance<SqliteTestBackend>;
public sealed class SqliteUserStoreTests : UserStoreConformance<SqliteTestBackend>;
public sealed class SqliteAuditRetentionTests : AuditRetentionConformance<SqliteTestBackend>;

public sealed class SqliteWorkflowTests : WorkflowConformance<SqliteTestBackend>;

public sealed class SqliteLimitTests : LimitConformance<SqliteTestBackend>;

// Cross-instance tests gated by CrossProcessNotifications: false on Windows, where they assert on the publishing instance.
public sealed class SqliteNotifierTests : NotifierConformance<SqliteTestBackend>;

public sealed class SqliteRetentionTests : RetentionConformance<SqliteTestBackend>;
