using System.Data.Common;
using System.Text.Json;
using Conveyor.Backends;
using Conveyor.Sqlite;
using Microsoft.Data.Sqlite;

namespace Conveyor.Sql.Tests;

public sealed class TaskListingUnitTests : IDisposable
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);
    private readonly SqliteConnection _db = SqliteMemory.OpenMigrated();

    public void Dispose() => _db.Dispose();

    /// <summary>What a MySQL/MariaDB store would change: @ parameters, and here a limit spelled otherwise.</summary>
    private sealed class OtherDialect : SqlDialect
    {
        public override char ParameterPrefix => '@';
        public override string Limit(string parameter) => $"FETCH FIRST {parameter} ROWS ONLY";
        public override object TaskIdValue(Guid id) => id;
        public override Guid ReadTaskId(DbDataReader reader, int ordinal) => reader.GetGuid(ordinal);
        public override string QuoteIdentifier(string name) => "`" + name.Replace("`", "``", StringComparison.Ordinal) + "`";
    }

    [Fact]
    public void A_query_is_built_in_the_dialect_with_one_parameter_per_filter_but_the_state()
    {
        using var command = _db.CreateCommand();
        var limit = TaskListing.Build(command, new OtherDialect(),
            new TaskQuery { State = TaskState.Dead, Task = "t", Queue = "q", Cursor = "42", Limit = 5000 });
        Assert.Equal(TaskListing.MaxLimit, limit);
        Assert.EndsWith(
            "FROM tasks WHERE 1 = 1 AND state = 5 AND state NOT IN (1, 2, 3) AND task = @task AND queue = @queue AND seq < @before ORDER BY seq DESC FETCH FIRST @limit ROWS ONLY",
            command.CommandText, StringComparison.Ordinal);
        var values = command.Parameters.Cast<DbParameter>().ToDictionary(p => p.ParameterName, p => p.Value);
        Assert.Equal(new Dictionary<string, object?>
        {
            ["@task"] = "t",
            ["@queue"] = "q",
            ["@before"] = 42L,
            ["@limit"] = TaskListing.MaxLimit + 1,
        }, values);
    }

    [Theory]
    [InlineData(TaskState.Dead, "tasks_rare_state")]
    [InlineData(TaskState.Cancelled, "tasks_rare_state")]
    [InlineData(TaskState.Retrying, "tasks_rare_state")]
    public void SQLite_lists_a_rare_state_from_its_partial_index(TaskState state, string index) =>
        Assert.Contains(index, Plan(new TaskQuery { State = state }), StringComparison.Ordinal);

    /// <summary>SQLite's plan of the listing of <paramref name="query"/>, one line per step.</summary>
    private string Plan(TaskQuery query)
    {
        using var command = _db.CreateCommand();
        TaskListing.Build(command, SqliteDialect.Instance, query);
        command.CommandText = "EXPLAIN QUERY PLAN " + command.CommandText;
        using var reader = command.ExecuteReader();
        var lines = new List<string>();
        while (reader.Read())
        {
            lines.Add(reader.GetString(3));
        }
        return string.Join('\n', lines);
    }

    [Fact]
    public void A_query_without_filters_only_orders_and_limits()
    {
        using var command = _db.CreateCommand();
        Assert.Equal(1, TaskListing.Build(command, SqliteDialect.Instance, new TaskQuery { Limit = 0 }));
        Assert.EndsWith("FROM tasks WHERE 1 = 1 ORDER BY seq DESC LIMIT $limit", command.CommandText, StringComparison.Ordinal);
        Assert.Equal(2, Assert.Single(command.Parameters.Cast<DbParameter>()).Value);
    }

    [Theory]
    [InlineData("")]
    [InlineData("abc")]
    [InlineData("-1")]
    [InlineData(" 7")]
    [InlineData("1.5")]
    [InlineData("99999999999999999999")]
    public void A_cursor_that_was_not_handed_out_is_refused(string cursor) =>
        Assert.Throws<ArgumentException>(() => TaskListing.ParseCursor(cursor));

    [Fact]
    public void A_cursor_is_the_sequence_in_decimal_as_before()
    {
        Assert.Equal("1234567890123", TaskListing.FormatCursor(1234567890123));
        Assert.Equal(1234567890123, TaskListing.ParseCursor("1234567890123"));
    }

    [Fact]
    public async Task Pages_run_newest_first_until_the_last_has_no_cursor()
    {
        var ids = Enumerable.Range(0, 5).Select(i => Insert("t", "q", TaskState.Queued)).ToList();
        var seen = new List<Guid>();
        var cursors = new List<string?>();
        string? cursor = null;
        do
        {
            var page = await TaskListing.ListAsync(_db, SqliteDialect.Instance, new TaskQuery { Limit = 2, Cursor = cursor }, CancellationToken.None);
            seen.AddRange(page.Items.Select(r => r.Id));
            cursor = page.NextCursor;
            cursors.Add(cursor);
        }
        while (cursor is not null);
        Assert.Equal(Enumerable.Reverse(ids), seen);
        Assert.Equal(["4", "2", null], cursors);
    }

    [Fact]
    public async Task A_queue_filter_looks_at_one_window_a_page_and_its_cursors_reach_every_match_once()
    {
        // 60 tasks; the queue "rare" holds three, at the 3rd, 7th and 55th place. A window of 10 sequence numbers.
        var ids = Enumerable.Range(1, 60).Select(i => Insert("t", i is 3 or 7 or 55 ? "rare" : "common", TaskState.Succeeded)).ToList();
        var pages = new List<(List<Guid> Items, string? Cursor)>();
        string? cursor = null;
        do
        {
            var page = await TaskListing.ListAsync(_db, SqliteDialect.Instance, new TaskQuery { Queue = "rare", Limit = 2, Cursor = cursor }, 10, CancellationToken.None);
            pages.Add((page.Items.Select(r => r.Id).ToList(), page.NextCursor));
            cursor = page.NextCursor;
        }
        while (cursor is not null && pages.Count < 20);

        // Each page stops at its window (51..60, 41..50, …) unless it filled first; the window reaching the oldest row
        // ends the walk without a bound.
        Assert.Equal([ids[54]], pages[0].Items);
        Assert.Equal("51", pages[0].Cursor);
        Assert.Equal(["51", "41", "31", "21", "11", null], pages.Select(p => p.Cursor));
        Assert.Equal([ids[54], ids[6], ids[2]], pages.SelectMany(p => p.Items));
        // Pages that fill inside their window hand out the last row's sequence, as before.
        var full = await TaskListing.ListAsync(_db, SqliteDialect.Instance, new TaskQuery { Queue = "common", Limit = 3 }, 10, CancellationToken.None);
        Assert.Equal([ids[59], ids[58], ids[57]], full.Items.Select(r => r.Id));
        Assert.Equal("58", full.NextCursor);
        // A state that an index serves is not bounded: the rare state's page finds its rows wherever they are.
        Insert("t", "rare", TaskState.Dead);
        var dead = await TaskListing.ListAsync(_db, SqliteDialect.Instance, new TaskQuery { Queue = "rare", State = TaskState.Dead }, 1, CancellationToken.None);
        Assert.Single(dead.Items);
        Assert.Null(dead.NextCursor);
    }

    [Fact]
    public async Task Filters_on_state_task_and_queue_combine()
    {
        var match = Insert("send", "mail", TaskState.Dead);
        Insert("send", "mail", TaskState.Queued);
        Insert("send", "other", TaskState.Dead);
        Insert("other", "mail", TaskState.Dead);
        var page = await TaskListing.ListAsync(_db, SqliteDialect.Instance,
            new TaskQuery { State = TaskState.Dead, Task = "send", Queue = "mail" }, CancellationToken.None);
        Assert.Equal(match, Assert.Single(page.Items).Id);
        Assert.Null(page.NextCursor);
        var dead = await TaskListing.ListAsync(_db, SqliteDialect.Instance, new TaskQuery { State = TaskState.Dead }, CancellationToken.None);
        Assert.Equal(3, dead.Items.Count);
    }

    [Fact]
    public async Task A_row_maps_to_every_field_of_its_record()
    {
        var error = new TaskError("System.Exception", "boom", "at X");
        var attemptError = new AttemptError(1, T0.AddSeconds(1), error);
        var id = Guid.CreateVersion7(T0);
        using (var insert = _db.CreateCommand())
        {
            insert.CommandText = """
                INSERT INTO tasks (id, task, queue, state, priority, args, result, error, errors, attempt, max_attempts,
                    retry_base_ms, retry_max_ms, retry_jitter, created_at, not_before, expires_at, started_at, finished_at,
                    idempotency_key, headers, lease_owner, cancel_requested, history)
                VALUES ($id, 'flights.score', 'eu', 3, -7, '{"a":1}', '0.97', $error, $errors, 2, 5, 1000, 60000, 0.2,
                    $t0, $t1, $t2, $t3, $t4, 'key-1', '{"h":"v"}', 'worker-7', 1, $history)
                """;
            insert.Parameters.AddWithValue("$id", id.ToByteArray(bigEndian: true));
            insert.Parameters.AddWithValue("$error", JsonSerializer.Serialize(error, ConveyorJson.Options));
            insert.Parameters.AddWithValue("$errors", JsonSerializer.Serialize(attemptError, ConveyorJson.Options));
            for (var i = 0; i <= 4; i++)
            {
                insert.Parameters.AddWithValue($"$t{i}", T0.AddSeconds(i).ToUnixTimeMilliseconds());
            }
            insert.Parameters.AddWithValue("$history", $"1:{T0.ToUnixTimeMilliseconds()}|2:{T0.AddSeconds(3).ToUnixTimeMilliseconds()}");
            insert.ExecuteNonQuery();
        }

        var record = await TaskRows.GetAsync(_db, SqliteDialect.Instance, id, CancellationToken.None);

        Assert.NotNull(record);
        Assert.Equal(id, record.Id);
        Assert.Equal("flights.score", record.Task);
        Assert.Equal("eu", record.Queue);
        Assert.Equal(TaskState.Succeeded, record.State);
        Assert.Equal(-7, record.Priority);
        Assert.Equal("""{"a":1}""", record.Args);
        Assert.Equal("0.97", record.Result);
        Assert.Equal(error, record.Error);
        Assert.Equal(attemptError, Assert.Single(record.Errors));
        Assert.Equal(2, record.Attempts);
        Assert.Equal(5, record.MaxAttempts);
        Assert.Equal(T0, record.CreatedAt);
        Assert.Equal(T0.AddSeconds(1), record.NotBefore);
        Assert.Equal(T0.AddSeconds(2), record.ExpiresAt);
        Assert.Equal(T0.AddSeconds(3), record.StartedAt);
        Assert.Equal(T0.AddSeconds(4), record.FinishedAt);
        Assert.Equal("key-1", record.IdempotencyKey);
        Assert.Equal(new Dictionary<string, string> { ["h"] = "v" }, record.Headers);
        Assert.Equal("worker-7", record.WorkerId);
        Assert.True(record.CancelRequested);
        Assert.Equal([new TaskTransition(TaskState.Queued, T0), new TaskTransition(TaskState.Running, T0.AddSeconds(3))], record.Transitions);
        Assert.Null(await TaskRows.GetAsync(_db, SqliteDialect.Instance, Guid.NewGuid(), CancellationToken.None));
    }

    [Fact]
    public async Task Queues_list_their_pause_flag_and_counts_by_state()
    {
        Insert("t", "a", TaskState.Queued);
        Insert("t", "a", TaskState.Queued);
        Insert("t", "b", TaskState.Dead);
        SqliteMemory.Scalar(_db, "INSERT INTO queues (name, paused) VALUES ('a', 0), ('b', 1), ('c', 0); SELECT 0");
        var queues = await TaskListing.GetQueuesAsync(_db, SqliteDialect.Instance, CancellationToken.None);
        Assert.Equal(["a", "b", "c"], queues.Select(q => q.Name));
        Assert.Equal([false, true, false], queues.Select(q => q.Paused));
        Assert.Equal(2, queues[0].Counts[TaskState.Queued]);
        Assert.Equal(1, queues[1].Counts[TaskState.Dead]);
        Assert.Empty(queues[2].Counts);
    }

    [Fact]
    public async Task Queue_counts_read_each_finished_state_up_to_the_limit_and_name_the_states_that_stopped_there()
    {
        Insert("t", "a", TaskState.Queued);
        Insert("t", "a", TaskState.Queued);
        Insert("t", "a", TaskState.Running);
        Insert("t", "a", TaskState.Scheduled);
        Insert("t", "a", TaskState.Retrying);
        Insert("t", "a", TaskState.Pending);
        Insert("t", "a", TaskState.Dead, finishedAt: 1);
        Insert("t", "a", TaskState.Expired, finishedAt: 2);
        for (var i = 0; i < 4; i++)
        {
            Insert("t", "b", TaskState.Cancelled, finishedAt: 3 + i);
        }
        for (var i = 0; i < 5; i++)
        {
            Insert("t", "a", TaskState.Succeeded, finishedAt: 10 + i);
        }
        Insert("t", "b", TaskState.Succeeded, finishedAt: 20);
        Insert("t", "b", TaskState.Succeeded, finishedAt: 21);

        var limited = await TaskListing.GetQueuesAsync(_db, SqliteDialect.Instance, 3, CancellationToken.None);

        // Succeeded: the newest 3 finished tasks (b at 21 and 20, a at 14). Cancelled: 3 of 4. Expired: 1, all there is.
        Assert.Equal(
            ["a Dead=1", "a Expired=1", "a Pending=1", "a Queued=2", "a Retrying=1", "a Running=1", "a Scheduled=1", "a Succeeded=1", "b Cancelled=3", "b Succeeded=2"],
            Flatten(limited));
        Assert.All(limited, q => Assert.Equal([TaskState.Succeeded, TaskState.Cancelled], q.LowerBounds));

        var all = await TaskListing.GetQueuesAsync(_db, SqliteDialect.Instance, 13, CancellationToken.None);
        Assert.Equal(
            ["a Dead=1", "a Expired=1", "a Pending=1", "a Queued=2", "a Retrying=1", "a Running=1", "a Scheduled=1", "a Succeeded=5", "b Cancelled=4", "b Succeeded=2"],
            Flatten(all));
        // 13 finished tasks read with a limit of 13: all of them, but a store that read its limit cannot tell.
        Assert.All(all, q => Assert.Equal([TaskState.Succeeded], q.LowerBounds));
        Assert.All(await TaskListing.GetQueuesAsync(_db, SqliteDialect.Instance, 14, CancellationToken.None), q => Assert.Empty(q.LowerBounds));
    }

    private static IEnumerable<string> Flatten(IReadOnlyList<QueueStats> queues) =>
        queues.SelectMany(q => q.Counts.Select(c => $"{q.Name} {c.Key}={c.Value}")).Order(StringComparer.Ordinal);

    [Fact]
    public void SQLite_counts_each_state_of_the_queues_through_a_partial_index_and_never_scans_the_table()
    {
        var plan = QueueCountsPlan();
        foreach (var line in plan.Split('\n').Where(l => l.Contains("tasks", StringComparison.Ordinal)))
        {
            Assert.Matches("(SCAN|SEARCH) tasks USING (COVERING )?INDEX tasks_(ready|leased|rare_state|finished)", line);
        }
        Assert.Contains("COVERING INDEX tasks_ready", plan, StringComparison.Ordinal);
        Assert.Contains("INDEX tasks_leased", plan, StringComparison.Ordinal);
        Assert.Contains("INDEX tasks_rare_state", plan, StringComparison.Ordinal);
        Assert.Contains("INDEX tasks_finished", plan, StringComparison.Ordinal);
    }

    private string QueueCountsPlan()
    {
        using var command = _db.CreateCommand();
        command.CommandText = "EXPLAIN QUERY PLAN " + TaskListing.QueueCountsSql(SqliteDialect.Instance);
        command.Parameters.AddWithValue("$limit", ITaskStore.FinishedCountLimit);
        using var reader = command.ExecuteReader();
        var lines = new List<string>();
        while (reader.Read())
        {
            lines.Add(reader.GetString(3));
        }
        return string.Join('\n', lines);
    }

    private Guid Insert(string task, string queue, TaskState state, long? finishedAt = null)
    {
        var id = Guid.NewGuid();
        using var insert = _db.CreateCommand();
        insert.CommandText = """
            INSERT INTO tasks (id, task, queue, state, max_attempts, retry_base_ms, retry_max_ms, retry_jitter, created_at, finished_at, history)
            VALUES ($id, $task, $queue, $state, 1, 0, 0, 0, 0, $finished, '')
            """;
        insert.Parameters.AddWithValue("$id", id.ToByteArray(bigEndian: true));
        insert.Parameters.AddWithValue("$task", task);
        insert.Parameters.AddWithValue("$queue", queue);
        insert.Parameters.AddWithValue("$state", (int)state);
        insert.Parameters.AddWithValue("$finished", finishedAt is { } at ? at : DBNull.Value);
        insert.ExecuteNonQuery();
        return id;
    }
}
