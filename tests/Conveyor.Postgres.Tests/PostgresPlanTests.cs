using Conveyor.Backends;
using Conveyor.TestBackends;
using Npgsql;

namespace Conveyor.Postgres.Tests;

/// <summary>
/// The statements that take leased rows by id keep their plan once ANALYZE has seen the table: a nested loop over the
/// ids and the <c>tasks_id</c> index. With the plain <c>state = 2</c> condition the planner, told by the statistics of a
/// table of queued tasks that almost nothing is leased, joins the ids to a scan of the partial index
/// <c>tasks_leased</c> instead — a scan that the drain fills with dead entries (issue 15: 3,600 tasks/s instead of
/// 20,000, and deadlocks, as that join locks rows in the index's order).
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The backend is disposed by IAsyncLifetime.DisposeAsync.")]
public sealed class PostgresPlanTests : IAsyncLifetime
{
    private const int Backlog = 20_000;
    private PostgresBackend _backend = null!;
    private string _tasks = null!;
    private string _workflows = null!;
    private string _edges = null!;
    private Guid[] _ids = [];
    private long[] _tokens = [];

    public async Task InitializeAsync()
    {
        var database = TestServers.FreshPostgres("plan");
        _backend = (PostgresBackend)database.Create();
        _tasks = new PostgresDialect(database.Schema).Table("tasks");
        _workflows = new PostgresDialect(database.Schema).Table("workflows");
        _edges = new PostgresDialect(database.Schema).Table("workflow_edges");
        await _backend.MigrateAsync(CancellationToken.None);
        var now = DateTimeOffset.UtcNow;
        for (var n = 0; n < Backlog; n += 1_000)
        {
            var batch = Enumerable.Range(0, 1_000)
                .Select(_ => new TaskMessage { Id = Guid.NewGuid(), Task = "noop", Queue = QueueNames.Default, CreatedAt = now })
                .ToArray();
            await _backend.EnqueueAsync(batch, CancellationToken.None);
        }
        // What autovacuum does to the table of any deployment soon after a backlog arrives.
        await PlanReading.ExecuteAsync($"ANALYZE {_tasks}");
        var leases = await _backend.FetchAsync(new FetchRequest
        {
            WorkerId = "plan-test",
            Queues = [new QueueWeight(QueueNames.Default)],
            MaxCount = 64,
            LeaseDuration = TimeSpan.FromMinutes(5),
        }, CancellationToken.None);
        Assert.Equal(64, leases.Count);
        var ordered = leases.OrderBy(l => l.Message.Id).ToArray();
        _ids = ordered.Select(l => l.Message.Id).ToArray();
        _tokens = ordered.Select(l => l.Token).ToArray();
    }

    public async Task DisposeAsync()
    {
        await _backend.DropSchemaAsync(CancellationToken.None);
        await _backend.DisposeAsync();
    }

    public static TheoryData<string> Statements => ["complete", "start", "extend", "release"];

    [Theory]
    [MemberData(nameof(Statements))]
    public async Task A_statement_on_leased_rows_looks_each_id_up_in_the_id_index_after_ANALYZE(string statement)
    {
        var plan = await ExplainAsync(statement, Sql(statement));

        Assert.Contains("Nested Loop", plan, StringComparison.Ordinal);
        Assert.Contains("Index Scan using tasks_id", plan, StringComparison.Ordinal);
        Assert.DoesNotContain("tasks_leased", plan, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_plain_state_condition_would_scan_the_leased_index_instead()
    {
        // The control: this setup does lead the planner astray when the condition can match the partial index, so the
        // test above shows the guard at work, not a planner that would have chosen well anyway.
        var plain = Sql("complete").Replace(PostgresBackend.HeldByLease, $"t.state = {Conveyor.Sql.StoredStates.Running}", StringComparison.Ordinal);

        var plan = await ExplainAsync("complete", plain);

        Assert.Contains("tasks_leased", plan, StringComparison.Ordinal);
    }

    private string Sql(string statement) => statement switch
    {
        "complete" => PostgresBackend.CompleteSql(_tasks, _workflows, _edges),
        "start" => PostgresBackend.StartSql(_tasks),
        "extend" => PostgresBackend.ExtendSql(_tasks),
        "release" => PostgresBackend.ReleaseSql(_tasks, _workflows),
        _ => throw new ArgumentOutOfRangeException(nameof(statement)),
    };

    private async Task<string> ExplainAsync(string statement, string sql)
    {
        await using var connection = new NpgsqlConnection(PostgresConnectionString.Normalize(TestServers.Postgres));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("EXPLAIN " + sql, connection);
        var n = _ids.Length;
        var p = command.Parameters;
        p.AddWithValue("id", _ids);
        p.AddWithValue("token", _tokens);
        switch (statement)
        {
            case "complete":
                p.AddWithValue("state", Enumerable.Repeat(3, n).ToArray());
                p.AddWithValue("result", Enumerable.Repeat<string?>(null, n).ToArray());
                p.AddWithValue("error", Enumerable.Repeat<string?>(null, n).ToArray());
                p.AddWithValue("entry", Enumerable.Repeat<string?>(null, n).ToArray());
                p.AddWithValue("nb", Enumerable.Repeat<long?>(null, n).ToArray());
                p.AddWithValue("finished", Enumerable.Repeat(1L, n).ToArray());
                p.AddWithValue("at", Enumerable.Repeat(1L, n).ToArray());
                p.AddWithValue("unspent", Enumerable.Repeat(0, n).ToArray());
                p.AddWithValue("set_headers", Enumerable.Repeat(false, n).ToArray());
                p.AddWithValue("headers", Enumerable.Repeat<string?>(null, n).ToArray());
                break;
            case "extend":
                p.AddWithValue("expires", 1L);
                break;
            case "release":
                p.AddWithValue("now", 1L);
                p.AddWithValue("error", "{}");
                p.AddWithValue("at", "1");
                p.AddWithValue("lapse", 0);
                break;
            default:
                break;
        }
        return await PlanReading.ReadPlanAsync(command);
    }
}
