using Conveyor.Backends;
using Conveyor.Sql;
using Microsoft.Data.Sqlite;

namespace Conveyor.Sqlite.Tests;

/// <summary>The plans of the statements every task runs, on the schema as migrated: SQLite builds a temporary b-tree
/// (OpenEphemeral) for a RETURNING clause, an IN subquery and an IN list of three or more values, also one in a partial
/// index's predicate, which every UPDATE that writes state evaluates: each costs a b-tree built and dropped on every run
/// (the in-process drain ran a third faster without the two that each completion and lease had; docs/benchmarks.md). And the rare
/// states' listings still find that index, whose predicate is now a range.</summary>
public sealed class SqliteHotStatementPlanTests
{
    [Theory]
    [InlineData(nameof(SqliteBackend.InsertSql), 0)]
    [InlineData(nameof(SqliteBackend.FetchReadSql), 0)]
    // The IN subquery of the rows the read took, and (in SQLite's later versions) the rows collected before they are
    // changed, as the UPDATE changes the index it finds them by: at most two, once for the whole batch of leases.
    [InlineData(nameof(SqliteBackend.FetchLeaseSql), 2)]
    [InlineData(nameof(SqliteBackend.StartSql), 0)]
    [InlineData(nameof(SqliteBackend.CompleteSuccessSql), 0)]
    [InlineData(nameof(SqliteBackend.CompleteSql), 0)]
    [InlineData(nameof(SqliteBackend.WorkflowReadySql), 0)]
    [InlineData(nameof(SqliteBackend.WorkflowReadyClearSql), 0)]
    public async Task A_hot_statement_builds_no_temporary_btree_beyond_its_own(string statement, int most)
    {
        await using var db = await MigratedDatabase.OpenAsync();
        var sql = (string)typeof(SqliteBackend).GetField(statement, System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.NonPublic)!.GetValue(null)!;

        var opcodes = Explain(db.Connection, sql);

        Assert.InRange(opcodes.Count(op => op == "OpenEphemeral"), 0, most);
        // Nor a sort: the fetch's order is the ready index's.
        Assert.DoesNotContain("SorterOpen", opcodes);
    }

    [Fact]
    public async Task The_fetch_is_not_compiled_again_for_each_batch_size()
    {
        // SQLite (3.46 on) compiles a statement again when a new value is bound to a parameter its plan looked at, such as
        // a LIMIT given as a bare parameter: a parse and plan on every fetch.
        await using var db = await MigratedDatabase.OpenAsync();
        using var read = new PreparedStatement(db.Connection, SqliteBackend.FetchReadSql, ["$queue", "$limit"]);
        using var lease = new PreparedStatement(
            db.Connection, SqliteBackend.FetchLeaseSql, ["$owner", "$token", "$expires", "$now", "$queue", "$limit"]);

        for (var limit = 1; limit <= 4; limit++)
        {
            read.Bind(0, "default");
            read.Bind(1, limit);
            Assert.False(read.Read());
            read.Reset();
            lease.Bind(0, "worker");
            lease.Bind(1, limit);
            lease.Bind(2, 2L);
            lease.Bind(3, 1L);
            lease.Bind(4, "default");
            lease.Bind(5, limit);
            Assert.Equal(0, lease.Execute());
        }

        Assert.Equal(0, read.Reprepares);
        Assert.Equal(0, lease.Reprepares);
    }

    [Fact]
    public async Task On_analyzed_tables_the_hot_statements_are_not_compiled_again_for_new_values()
    {
        // With ANALYZE's statistics (sqlite_stat4), SQLite compiles a statement again when a new value is bound to a
        // parameter whose value its plan estimated from them: every fetch and completion, were it so.
        await using var db = await MigratedDatabase.OpenAsync();
        var messages = Enumerable.Range(0, 400).Select(i => new TaskMessage
        {
            Id = Guid.CreateVersion7(),
            Task = "test.plan",
            Queue = i % 4 == 0 ? "other" : "default",
            Priority = i % 3,
            CreatedAt = DateTimeOffset.UtcNow,
        }).ToList();
        await db.Backend.Queue.EnqueueAsync(messages, CancellationToken.None);
        using (var analyze = db.Connection.CreateCommand())
        {
            analyze.CommandText = "ANALYZE";
            analyze.ExecuteNonQuery();
        }
        using var read = new PreparedStatement(db.Connection, SqliteBackend.FetchReadSql, ["$queue", "$limit"]);
        using var success = new PreparedStatement(
            db.Connection, SqliteBackend.CompleteSuccessSql, ["$result", "$at", "$id", "$token"]);

        for (var i = 0; i < 6; i++)
        {
            read.Bind(0, i % 2 == 0 ? "default" : "other");
            read.Bind(1, i + 1);
            Assert.True(read.Read());
            read.Reset();
            success.Bind(0, (string?)null);
            success.Bind(1, i);
            success.Bind(2, messages[i].Id.ToByteArray(bigEndian: true));
            success.Bind(3, 1L);
            Assert.Equal(0, success.Execute());
        }

        Assert.Equal(0, read.Reprepares);
        Assert.Equal(0, success.Reprepares);
    }

    [Fact]
    public async Task An_index_predicate_with_an_IN_list_would_be_seen()
    {
        await using var db = await MigratedDatabase.OpenAsync();
        // The check above can fail: the index as migration 013 made it gives the completion two temporary b-trees.
        using (var command = db.Connection.CreateCommand())
        {
            command.CommandText = "DROP INDEX tasks_rare_state; CREATE INDEX tasks_rare_state ON tasks(state) WHERE state NOT IN (1, 2, 3)";
            command.ExecuteNonQuery();
        }

        Assert.Equal(2, Explain(db.Connection, SqliteBackend.CompleteSuccessSql).Count(op => op == "OpenEphemeral"));
    }

    [Theory]
    [InlineData(TaskState.Dead)]
    [InlineData(TaskState.Scheduled)]
    [InlineData(TaskState.Cancelled)]
    public async Task The_listing_of_a_rare_state_reads_the_rare_states_index(TaskState state)
    {
        await using var db = await MigratedDatabase.OpenAsync();
        using var command = db.Connection.CreateCommand();
        TaskListing.Build(command, SqliteDialect.Instance, new TaskQuery { State = state });
        command.CommandText = "EXPLAIN QUERY PLAN " + command.CommandText;

        Assert.Contains(QueryPlan(command), step => step.Contains("USING INDEX tasks_rare_state", StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_queue_counts_read_the_rare_states_index()
    {
        await using var db = await MigratedDatabase.OpenAsync();
        using var command = db.Connection.CreateCommand();
        command.CommandText = "EXPLAIN QUERY PLAN " + TaskListing.QueueCountsSql(SqliteDialect.Instance);
        command.Parameters.AddWithValue("$limit", 100);

        Assert.Equal(3, QueryPlan(command).Count(step => step.Contains("USING INDEX tasks_rare_state", StringComparison.Ordinal)));
    }

    private static List<string> Explain(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "EXPLAIN " + sql;
        var opcodes = new List<string>();
        using var reader = command.ExecuteReader();
        while (reader.Read())
        {
            opcodes.Add(reader.GetString(1));
        }
        return opcodes;
    }

    private static List<string> QueryPlan(SqliteCommand command)
    {
        var steps = new List<string>();
        using var reader = command.ExecuteReader();
        while (reader.Read())
        {
            steps.Add(reader.GetString(3));
        }
        return steps;
    }

    /// <summary>A backend's file, migrated, and a plain connection to it.</summary>
    private sealed class MigratedDatabase(SqliteTestBackend factory, SqliteBackend backend, SqliteConnection connection) : IAsyncDisposable
    {
        public SqliteConnection Connection => connection;

        public SqliteBackend Backend => backend;

        public static async Task<MigratedDatabase> OpenAsync()
        {
            var factory = new SqliteTestBackend();
            var backend = (SqliteBackend)await factory.CreateAsync(TimeProvider.System);
            var connection = new SqliteConnection($"Data Source={backend.DatabasePath}");
            await connection.OpenAsync();
            return new MigratedDatabase(factory, backend, connection);
        }

        public async ValueTask DisposeAsync()
        {
            await connection.DisposeAsync();
            await factory.DisposeAsync(backend);
        }
    }
}
