using Conveyor.Sql.Migrations;
using Microsoft.Data.Sqlite;

namespace Conveyor.Sqlite;

/// <summary>Numbered migrations (the embedded <c>Migrations/NNN_name.sql</c>), applied in order and recorded in
/// <c>PRAGMA user_version</c>.</summary>
internal static class SqliteSchema
{
    private static readonly SqlMigrationSet Migrations =
        SqlMigrationSet.FromResources(typeof(SqliteSchema).Assembly, "Conveyor.Sqlite.Migrations.");

    /// <summary>The version this build migrates to.</summary>
    public static int LatestVersion => Migrations.LatestVersion;

    /// <summary>Applies missing migrations inside the caller's write transaction; returns how many were applied.</summary>
    public static int Apply(SqliteConnection connection) => SqlMigrator.Apply(connection, null, Migrations, Journal.Instance);

    /// <summary>The version is the file header's <c>user_version</c>, set in the same command as the migration, so both
    /// commit together in the writer's transaction.</summary>
    private sealed class Journal : SqlSchemaJournal
    {
        public static readonly Journal Instance = new();

        public override string Database => "The SQLite database";

        public override string ReadVersionSql => "PRAGMA user_version";

        public override string Script(SqlMigration migration) =>
            migration.Render(SqliteDialect.Instance) + $"\nPRAGMA user_version = {migration.Version};";
    }
}
