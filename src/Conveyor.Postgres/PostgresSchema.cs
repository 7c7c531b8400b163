using Conveyor.Sql.Migrations;
using Npgsql;

namespace Conveyor.Postgres;

/// <summary>Numbered migrations (the embedded <c>Migrations/NNN_name.sql</c>), applied in order inside one transaction
/// under an advisory lock, and recorded in <c>schema_migrations</c>. Tables are created in the configured schema (it is
/// the search_path while a migration runs; a migration may also name it as <c>{{schema}}</c>).</summary>
internal static class PostgresSchema
{
    private static readonly SqlMigrationSet Migrations =
        SqlMigrationSet.FromResources(typeof(PostgresSchema).Assembly, "Conveyor.Postgres.Migrations.");

    /// <summary>The version this build migrates to.</summary>
    public static int LatestVersion => Migrations.LatestVersion;

    /// <summary>Creates the schema if needed and applies missing migrations; returns how many were applied.</summary>
    public static async Task<int> ApplyAsync(NpgsqlDataSource dataSource, string schema, CancellationToken cancellationToken)
    {
        var quoted = PostgresDialect.Instance.QuoteIdentifier(schema);
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        // A schema already at this build's version (every start but the first after an upgrade) needs nothing: one read
        // of the version says so, without the transaction, the advisory lock and the DDL statements below, which every
        // process start paid before (issue 15, the worker's start-up). Versions only grow and each is recorded in the
        // migration's own transaction, so a schema read at the latest version stays there; any other version (none, an
        // older one, or a newer one, which the migrator refuses) takes the locked path as before.
        if (await ReadVersionAsync(connection, schema, null, cancellationToken).ConfigureAwait(false) == Migrations.LatestVersion)
        {
            return 0;
        }
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        // Concurrent starters (a server and its workers) queue on the lock, so each migration runs once.
        await using (var command = new NpgsqlCommand(
            $"""
            SELECT pg_advisory_xact_lock(hashtextextended('conveyor.migrate.' || @schema, 0));
            CREATE SCHEMA IF NOT EXISTS {quoted};
            CREATE TABLE IF NOT EXISTS {quoted}.schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
            """, connection, transaction))
        {
            command.Parameters.AddWithValue("schema", schema);
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
        var applied = await SqlMigrator.ApplyAsync(connection, transaction, Migrations, new Journal(schema), cancellationToken).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return applied;
    }

    /// <summary>The highest applied migration, 0 when none (or no schema).</summary>
    public static async Task<int> ReadVersionAsync(NpgsqlConnection connection, string schema, NpgsqlTransaction? transaction, CancellationToken cancellationToken)
    {
        var journal = new Journal(schema);
        await using (var exists = new NpgsqlCommand("SELECT to_regclass(@table) IS NOT NULL", connection, transaction))
        {
            exists.Parameters.AddWithValue("table", journal.Table);
            if (await exists.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not true)
            {
                return 0;
            }
        }
        await using var command = new NpgsqlCommand(journal.ReadVersionSql, connection, transaction);
        return Convert.ToInt32(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false), System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>One row per applied version in <c>schema_migrations</c>, inserted in the migration's own command.</summary>
    private sealed class Journal(string schema) : SqlSchemaJournal
    {
        private readonly string _schema = PostgresDialect.Instance.QuoteIdentifier(schema);

        public string Table => $"{_schema}.schema_migrations";

        public override string Database => $"The PostgreSQL schema '{schema}'";

        public override string ReadVersionSql => $"SELECT coalesce(max(version), 0) FROM {Table}";

        public override string Script(SqlMigration migration) =>
            $"SET LOCAL search_path TO {_schema};\n"
            + migration.Render(PostgresDialect.Instance, new Dictionary<string, string> { ["schema"] = schema })
            + $"\nINSERT INTO {Table} (version) VALUES ({migration.Version});";
    }
}
