using Conveyor.Backends;
using Conveyor.Sql.Migrations;
using Conveyor.Sqlite;
using Microsoft.Data.Sqlite;

namespace Conveyor.Sql.Tests;

/// <summary>The SQLite backend's embedded migrations against databases made by the builds before them.</summary>
public sealed class SqliteMigrationsUnitTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("conveyor-sql-tests").FullName;

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        Directory.Delete(_folder, recursive: true);
    }

    [Fact]
    public async Task A_database_at_the_last_legacy_version_gets_only_the_later_migrations_and_ends_as_a_fresh_one()
    {
        var path = Legacy("legacy.db", LegacySqliteSchema.Migrations.Length);

        // Running 001 again would fail ("table tasks already exists").
        using (var backend = new SqliteBackend(new SqliteBackendOptions { Path = path }))
        {
            await backend.MigrateAsync(CancellationToken.None);
            Assert.Equal(SqliteSchema.LatestVersion, await backend.GetSchemaVersionAsync(CancellationToken.None));
            Assert.True((await backend.CheckHealthAsync(CancellationToken.None)).Healthy);
        }
        Assert.True(SqliteSchema.LatestVersion > LegacySqliteSchema.Migrations.Length);
        Assert.Equal(Schema(await FreshAsync()), Schema(path));
    }

    [Fact]
    public void The_embedded_migrations_build_what_the_legacy_ones_built()
    {
        var versions = LegacySqliteSchema.Migrations.Length;
        var embedded = SqlMigrationSet.FromResources(typeof(SqliteBackend).Assembly, "Conveyor.Sqlite.Migrations.");
        var upToLegacy = SqlMigrationSet.FromFiles(embedded.Migrations.Take(versions).Select(m => KeyValuePair.Create(m.Name, m.Sql)));
        var path = Path.Combine(_folder, "embedded.db");
        using (var connection = new SqliteConnection($"Data Source={path}"))
        {
            connection.Open();
            Assert.Equal(versions, SqlMigrator.Apply(connection, null, upToLegacy, SqliteMemory.UserVersionJournal.Instance));
        }
        Assert.Equal(Schema(Legacy("legacy.db", versions)), Schema(path));
    }

    [Fact]
    public async Task A_legacy_database_at_version_1_gets_the_later_migrations_and_ends_as_a_fresh_one()
    {
        var path = Legacy("v1.db", 1);
        using (var backend = new SqliteBackend(new SqliteBackendOptions { Path = path }))
        {
            await backend.MigrateAsync(CancellationToken.None);
            Assert.Equal(SqliteSchema.LatestVersion, await backend.GetSchemaVersionAsync(CancellationToken.None));
        }
        Assert.Equal(Schema(await FreshAsync()), Schema(path));
    }

    [Fact]
    public async Task Migration_3_counts_the_leases_held_then_as_started_and_leaves_other_rows_unstarted()
    {
        var path = Legacy("v2.db", 2);
        var running = Guid.NewGuid();
        var queued = Guid.NewGuid();
        using (var connection = new SqliteConnection($"Data Source={path}"))
        {
            connection.Open();
            Insert(connection, running, TaskState.Running, attempt: 1);
            Insert(connection, queued, TaskState.Queued, attempt: 0);
        }

        using var backend = new SqliteBackend(new SqliteBackendOptions { Path = path });
        await backend.MigrateAsync(CancellationToken.None);

        // The build before spent the attempt at fetch: the lease held across the upgrade stays spent when it runs out.
        Assert.Equal(1, (await backend.RequeueExpiredLeasesAsync(CancellationToken.None)).Count);
        var interrupted = await backend.GetAsync(running, CancellationToken.None);
        Assert.Equal(TaskState.Queued, interrupted!.State);
        Assert.Equal(1, interrupted.Attempts);
        Assert.Equal(LeaseRules.InterruptedErrorType, Assert.Single(interrupted.Errors).Error.Type);
        var leases = (await backend.FetchAsync(new FetchRequest
        {
            WorkerId = "new-worker",
            Queues = [new QueueWeight("q")],
            MaxCount = 2,
            LeaseDuration = TimeSpan.FromMinutes(1),
        }, CancellationToken.None)).ToDictionary(l => l.Message.Id);
        Assert.Equal((2, true, true), (leases[running].Attempt, leases[running].IsRedelivery, leases[running].RecordStartFirst));
        Assert.Equal((1, false, false), (leases[queued].Attempt, leases[queued].IsRedelivery, leases[queued].RecordStartFirst));
    }

    /// <summary>A task row as the builds before migration 3 wrote it; a running one holds a lease that ran out long ago.</summary>
    private static void Insert(SqliteConnection connection, Guid id, TaskState state, int attempt)
    {
        using var command = connection.CreateCommand();
        command.CommandText = """
            INSERT INTO tasks (id, task, queue, state, attempt, max_attempts, retry_base_ms, retry_max_ms, retry_jitter, created_at,
                lease_owner, lease_token, lease_expires, history)
            VALUES ($id, 't', 'q', $state, $attempt, 5, 1000, 60000, 0, 1, $owner, $token, $expires, '1:1')
            """;
        command.Parameters.AddWithValue("$id", id.ToByteArray(bigEndian: true));
        command.Parameters.AddWithValue("$state", (int)state);
        command.Parameters.AddWithValue("$attempt", attempt);
        command.Parameters.AddWithValue("$owner", state == TaskState.Running ? "old-worker" : DBNull.Value);
        command.Parameters.AddWithValue("$token", state == TaskState.Running ? 7 : DBNull.Value);
        command.Parameters.AddWithValue("$expires", state == TaskState.Running ? 1 : DBNull.Value);
        command.ExecuteNonQuery();
    }

    /// <summary>A database made by this build's backend.</summary>
    private async Task<string> FreshAsync()
    {
        var path = Path.Combine(_folder, "fresh.db");
        using var backend = new SqliteBackend(new SqliteBackendOptions { Path = path });
        await backend.MigrateAsync(CancellationToken.None);
        return path;
    }

    /// <summary>A database made as the legacy SqliteSchema.Apply made it, up to <paramref name="version"/>.</summary>
    private string Legacy(string name, int version)
    {
        var path = Path.Combine(_folder, name);
        using var connection = new SqliteConnection($"Data Source={path}");
        connection.Open();
        for (var v = 0; v < version; v++)
        {
            using var migrate = connection.CreateCommand();
            migrate.CommandText = LegacySqliteSchema.Migrations[v] + $"\nPRAGMA user_version = {v + 1};";
            migrate.ExecuteNonQuery();
        }
        return path;
    }

    /// <summary>Every table and index with its SQL, and the version.</summary>
    private static List<string> Schema(string path)
    {
        using var connection = new SqliteConnection($"Data Source={path}");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT type || ' ' || name || ': ' || coalesce(sql, '') FROM sqlite_master ORDER BY type, name";
        using var reader = command.ExecuteReader();
        var rows = new List<string>();
        while (reader.Read())
        {
            rows.Add(reader.GetString(0));
        }
        rows.Add("user_version " + SqliteMemory.Scalar(connection, "PRAGMA user_version"));
        return rows;
    }
}
