using Conveyor.Sql.Migrations;
using Conveyor.Sqlite;
using Microsoft.Data.Sqlite;

namespace Conveyor.Sql.Tests;

/// <summary>A private in-memory SQLite database, and a journal in its user_version like the SQLite backend's.</summary>
internal static class SqliteMemory
{
    public static SqliteConnection Open()
    {
        var connection = new SqliteConnection("Data Source=:memory:");
        connection.Open();
        return connection;
    }

    /// <summary>Opens one with the SQLite backend's own migrations applied.</summary>
    public static SqliteConnection OpenMigrated()
    {
        var connection = Open();
        SqlMigrator.Apply(connection, null, SqlMigrationSet.FromResources(typeof(SqliteBackend).Assembly, "Conveyor.Sqlite.Migrations."), UserVersionJournal.Instance);
        return connection;
    }

    public static long Scalar(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToInt64(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
    }

    public sealed class UserVersionJournal : SqlSchemaJournal
    {
        public static readonly UserVersionJournal Instance = new();

        public override string Database => "The test database";

        public override string ReadVersionSql => "PRAGMA user_version";

        public override string Script(SqlMigration migration) =>
            migration.Render(SqliteDialect.Instance) + $"\nPRAGMA user_version = {migration.Version};";
    }
}
