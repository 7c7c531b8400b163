using System.Text.RegularExpressions;
using Conveyor.Backends;
using Conveyor.Sql;
using Conveyor.TestBackends;
using Npgsql;
using Xunit.Abstractions;

namespace Conveyor.Postgres.Tests;

/// <summary>
/// The queues' counts (<c>GET /api/v1/queues</c>, the dashboard) read each state through its partial index, on a table
/// that holds mostly finished tasks, as a store that keeps results for days does: the work grows with a queue's depth
/// and with the limit on finished rows, not with the table (issue 13: a GROUP BY over a million rows took 238 ms).
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The backend is disposed by IAsyncLifetime.DisposeAsync.")]
public sealed class PostgresQueueCountPlanTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int Tasks = 20_000;
    private PostgresBackend _backend = null!;
    private PostgresDialect _dialect = null!;

    public async Task InitializeAsync()
    {
        var database = TestServers.FreshPostgres("counts");
        _backend = (PostgresBackend)database.Create();
        _dialect = new PostgresDialect(database.Schema);
        await _backend.MigrateAsync(CancellationToken.None);
        var now = DateTimeOffset.UtcNow;
        for (var n = 0; n < Tasks; n += 1_000)
        {
            var batch = Enumerable.Range(0, 1_000)
                .Select(i => new TaskMessage { Id = Guid.NewGuid(), Task = "noop", Queue = i % 10 == 0 ? "reports" : QueueNames.Default, CreatedAt = now })
                .ToArray();
            await _backend.EnqueueAsync(batch, CancellationToken.None);
        }
        // 98 % finished (a few cancelled, expired and dead among them); the rest queued, running, scheduled, retrying.
        var tasks = _dialect.Table("tasks");
        await PlanReading.ExecuteAsync($"""
            UPDATE {tasks} SET state = CASE seq % 50 WHEN 1 THEN 6 WHEN 2 THEN 7 WHEN 3 THEN 5 ELSE 3 END, finished_at = seq
                WHERE seq % 50 NOT IN (0, 4, 5, 6);
            UPDATE {tasks} SET state = 2, lease_expires = seq, lease_owner = 'w' WHERE seq % 50 = 4;
            UPDATE {tasks} SET state = 0, not_before = seq WHERE seq % 50 = 5;
            UPDATE {tasks} SET state = 4, not_before = seq WHERE seq % 50 = 6;
            """);
        // What autovacuum does to the table of any deployment.
        await PlanReading.ExecuteAsync($"VACUUM ANALYZE {tasks}");
    }

    public async Task DisposeAsync()
    {
        await _backend.DropSchemaAsync(CancellationToken.None);
        await _backend.DisposeAsync();
    }

    [Fact]
    public async Task The_counts_read_each_state_through_its_partial_index_and_never_scan_the_table()
    {
        // The limit a tenth of the table, as the default limit is of half a million rows.
        var plan = await ExplainAsync(TaskListing.QueueCountsSql(_dialect), Tasks / 10);
        output.WriteLine(plan);

        Assert.DoesNotContain("Seq Scan", plan, StringComparison.Ordinal);
        // Which index access (index only, plain or bitmap) depends on how much of the table the visibility map calls
        // all-visible, which a transaction of another test class on the same server holds back: any, so long as it is
        // through the partial index of each state (a flaky run saw "Index Only Scan" give way to another access). Queued
        // tasks have two (tasks_ready for the fetch, tasks_queued): the planner takes either, by the same statistics.
        Assert.Matches("tasks_(ready|queued)", plan);
        Assert.Contains("tasks_leased", plan, StringComparison.Ordinal);
        Assert.Contains("tasks_rare_state", plan, StringComparison.Ordinal);
        Assert.Matches(@"Scan Backward using tasks_finished", plan);
        var indexes = Regex.Matches(plan, @"(?:using|Bitmap Index Scan on) (\w+)").Select(m => m.Groups[1].Value).ToList();
        Assert.NotEmpty(indexes);
        Assert.All(indexes, index => Assert.Contains(index, (string[])["tasks_ready", "tasks_queued", "tasks_leased", "tasks_due", "tasks_rare_state", "tasks_pending_steps", "tasks_finished"]));
    }

    [Fact]
    public async Task The_plain_grouping_the_counts_replace_scans_the_table()
    {
        // The control: on this table the planner reads every row for the statement of before.
        var plan = await ExplainAsync($"SELECT queue, state, count(*) FROM {_dialect.Table("tasks")} GROUP BY queue, state", null);

        Assert.Contains("Seq Scan on tasks", plan, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_counts_are_exact_for_the_depth_and_lower_bounds_for_the_finished_states_past_the_limit()
    {
        var queues = await _backend.GetQueuesAsync(1_000, CancellationToken.None);

        var all = queues.Single(q => q.Name == QueueNames.Default).Counts.ToDictionary(c => c.Key, c => c.Value);
        foreach (var (state, count) in queues.Single(q => q.Name == "reports").Counts)
        {
            all[state] = all.GetValueOrDefault(state) + count;
        }
        // seq 1 to 20,000: 400 of each residue of 50.
        Assert.Equal(400, all[TaskState.Queued]);
        Assert.Equal(400, all[TaskState.Running]);
        Assert.Equal(400, all[TaskState.Scheduled]);
        Assert.Equal(400, all[TaskState.Retrying]);
        Assert.Equal(400, all[TaskState.Dead]);
        Assert.Equal([TaskState.Succeeded], queues[0].LowerBounds);
        Assert.Equal(400, all[TaskState.Cancelled]);
        Assert.Equal(400, all[TaskState.Expired]);
        // The newest 1,000 finished rows, of which the dead, cancelled and expired ones are 3 in 46.
        Assert.InRange(all[TaskState.Succeeded], 900, 1_000);
    }

    private static async Task<string> ExplainAsync(string sql, int? limit)
    {
        await using var connection = new NpgsqlConnection(PostgresConnectionString.Normalize(TestServers.Postgres));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("EXPLAIN " + sql, connection);
        if (limit is { } value)
        {
            command.Parameters.AddWithValue("limit", value);
        }
        return await PlanReading.ReadPlanAsync(command);
    }
}
