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
    public async Task A_database_at_the_last_legacy_version_is_up_to_date_and_not_migrated_again()
    {
        var path = Legacy("legacy.db", LegacySqliteSchema.Migrations.Length);
        var before = Schema(path);

        // Running 001 again would fail ("table tasks already exists"); running 002 again would rebuild an index.
        using (var backend = new SqliteBackend(new SqliteBackendOptions { Path = path }))
        {
            await backend.MigrateAsync(CancellationToken.None);
            Assert.Equal(LegacySqliteSchema.Migrations.Length, await backend.GetSchemaVersionAsync(CancellationToken.None));
            Assert.True((await backend.CheckHealthAsync(CancellationToken.None)).Healthy);
        }
        Assert.Equal(before, Schema(path));
    }

    [Fact]
    public async Task The_embedded_migrations_build_what_the_legacy_ones_built()
    {
        var fresh = Path.Combine(_folder, "fresh.db");
        using (var backend = new SqliteBackend(new SqliteBackendOptions { Path = fresh }))
        {
            await backend.MigrateAsync(CancellationToken.None);
        }
        Assert.Equal(Schema(Legacy("legacy.db", LegacySqliteSchema.Migrations.Length)), Schema(fresh));
    }

    [Fact]
    public async Task A_legacy_database_at_version_1_gets_migration_2()
    {
        var path = Legacy("v1.db", 1);
        using (var backend = new SqliteBackend(new SqliteBackendOptions { Path = path }))
        {
            await backend.MigrateAsync(CancellationToken.None);
            Assert.Equal(2, await backend.GetSchemaVersionAsync(CancellationToken.None));
        }
        Assert.Equal(Schema(Legacy("v2.db", 2)), Schema(path));
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
