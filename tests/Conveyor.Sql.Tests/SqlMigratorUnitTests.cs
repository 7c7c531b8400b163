using Conveyor.Sql.Migrations;

namespace Conveyor.Sql.Tests;

public class SqlMigratorUnitTests
{
    private static readonly SqlMigrationSet TwoTables = SqlMigrationSet.FromFiles(
    [
        new("002_second.sql", "CREATE TABLE second (y INTEGER);"),
        new("001_initial.sql", "CREATE TABLE first (x INTEGER);"),
    ]);

    [Fact]
    public void An_empty_database_gets_every_migration_in_order_and_their_version()
    {
        using var connection = SqliteMemory.Open();
        Assert.Equal(2, SqlMigrator.Apply(connection, null, TwoTables, SqliteMemory.UserVersionJournal.Instance));
        Assert.Equal(2, SqliteMemory.Scalar(connection, "PRAGMA user_version"));
        Assert.Equal(2, SqliteMemory.Scalar(connection, "SELECT count(*) FROM sqlite_master WHERE name IN ('first', 'second')"));
    }

    [Fact]
    public async Task A_database_at_the_latest_version_runs_nothing()
    {
        using var connection = SqliteMemory.Open();
        SqlMigrator.Apply(connection, null, TwoTables, SqliteMemory.UserVersionJournal.Instance);
        // Running 001 again would fail: "table first already exists".
        Assert.Equal(0, SqlMigrator.Apply(connection, null, TwoTables, SqliteMemory.UserVersionJournal.Instance));
        Assert.Equal(0, await SqlMigrator.ApplyAsync(connection, null, TwoTables, SqliteMemory.UserVersionJournal.Instance, CancellationToken.None));
    }

    [Fact]
    public async Task A_database_part_way_gets_the_rest()
    {
        using var connection = SqliteMemory.Open();
        SqliteMemory.Scalar(connection, "CREATE TABLE first (x INTEGER); PRAGMA user_version = 1; SELECT 0");
        Assert.Equal(1, await SqlMigrator.ApplyAsync(connection, null, TwoTables, SqliteMemory.UserVersionJournal.Instance, CancellationToken.None));
        Assert.Equal(2, SqliteMemory.Scalar(connection, "PRAGMA user_version"));
    }

    [Fact]
    public void A_database_newer_than_the_build_is_refused_and_left_alone()
    {
        using var connection = SqliteMemory.Open();
        SqliteMemory.Scalar(connection, "PRAGMA user_version = 3; SELECT 0");
        var error = Assert.Throws<InvalidOperationException>(() => SqlMigrator.Apply(connection, null, TwoTables, SqliteMemory.UserVersionJournal.Instance));
        Assert.Contains("schema version 3, newer than this build of Conveyor knows (2)", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, SqliteMemory.Scalar(connection, "SELECT count(*) FROM sqlite_master"));
    }
}
