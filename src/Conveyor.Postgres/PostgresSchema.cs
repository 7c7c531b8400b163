using Npgsql;

namespace Conveyor.Postgres;

/// <summary>Numbered migrations, applied in order inside one transaction under an advisory lock, and recorded
/// in <c>schema_migrations</c>. Tables are created in the configured schema (it is the connection's search_path).</summary>
internal static class PostgresSchema
{
    /// <summary>Each entry upgrades from version i to i+1. Never edit a shipped one; add another.</summary>
    private static readonly string[] Migrations =
    [
        """
        CREATE TABLE tasks (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id uuid NOT NULL,
            task text NOT NULL,
            queue text NOT NULL,
            state smallint NOT NULL,
            priority integer NOT NULL DEFAULT 0,
            args text,
            result text,
            error text,
            errors text,
            attempt integer NOT NULL DEFAULT 0,
            max_attempts integer NOT NULL,
            retry_base_ms bigint NOT NULL,
            retry_max_ms bigint NOT NULL,
            retry_jitter double precision NOT NULL,
            timeout_ms bigint,
            not_before bigint,
            expires_at bigint,
            created_at bigint NOT NULL,
            started_at bigint,
            finished_at bigint,
            idempotency_key text,
            headers text,
            lease_owner text,
            lease_token bigint,
            lease_expires bigint,
            redelivered boolean NOT NULL DEFAULT false,
            cancel_requested boolean NOT NULL DEFAULT false,
            history text NOT NULL
        ) WITH (fillfactor = 80);
        CREATE UNIQUE INDEX tasks_id ON tasks (id);
        CREATE UNIQUE INDEX tasks_idempotency ON tasks (idempotency_key) WHERE idempotency_key IS NOT NULL;
        CREATE INDEX tasks_ready ON tasks (queue, priority DESC, seq) WHERE state = 1;
        CREATE INDEX tasks_due ON tasks (not_before) WHERE state IN (0, 4);
        CREATE INDEX tasks_leased ON tasks (lease_expires) WHERE state = 2;
        CREATE INDEX tasks_finished ON tasks (finished_at) WHERE state IN (3, 5, 6, 7);
        CREATE INDEX tasks_state ON tasks (state, seq);
        CREATE TABLE queues (name text PRIMARY KEY, paused boolean NOT NULL DEFAULT false);
        CREATE TABLE workers (id text PRIMARY KEY, info text NOT NULL, heartbeat_at bigint NOT NULL);
        CREATE TABLE leaders (name text PRIMARY KEY, owner text NOT NULL, expires_at bigint NOT NULL);
        """,
        // Every task passes through ready (1), running (2) and succeeded (3): an index over all states took an
        // entry on each of those updates. Listing those states walks the primary key from the newest row
        // (where they are); the rare states keep an index so that listing them never scans the table.
        """
        DROP INDEX tasks_state;
        CREATE INDEX tasks_rare_state ON tasks (state, seq) WHERE state NOT IN (1, 2, 3);
        """,
    ];

    /// <summary>The version this build migrates to.</summary>
    public static int LatestVersion => Migrations.Length;

    /// <summary>Creates the schema if needed and applies missing migrations; returns how many were applied.</summary>
    public static async Task<int> ApplyAsync(NpgsqlDataSource dataSource, string schema, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        await using (var command = new NpgsqlCommand(
            $"""
            SELECT pg_advisory_xact_lock(hashtextextended('conveyor.migrate.' || @schema, 0));
            CREATE SCHEMA IF NOT EXISTS "{schema}";
            CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
            """, connection, transaction))
        {
            command.Parameters.AddWithValue("schema", schema);
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
        var version = await ReadVersionAsync(connection, schema, transaction, cancellationToken).ConfigureAwait(false);
        if (version > Migrations.Length)
        {
            throw new InvalidOperationException(
                $"The PostgreSQL schema '{schema}' is at version {version}, newer than this build of Conveyor knows ({Migrations.Length}). Upgrade Conveyor.");
        }
        var applied = 0;
        for (var v = version; v < Migrations.Length; v++)
        {
            await using var migrate = new NpgsqlCommand(
                $"SET LOCAL search_path TO \"{schema}\";\n{Migrations[v]}\nINSERT INTO \"{schema}\".schema_migrations (version) VALUES ({v + 1});",
                connection, transaction);
            await migrate.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            applied++;
        }
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return applied;
    }

    /// <summary>The highest applied migration, 0 when none (or no schema).</summary>
    public static async Task<int> ReadVersionAsync(NpgsqlConnection connection, string schema, NpgsqlTransaction? transaction, CancellationToken cancellationToken)
    {
        await using (var exists = new NpgsqlCommand("SELECT to_regclass(@table) IS NOT NULL", connection, transaction))
        {
            exists.Parameters.AddWithValue("table", $"\"{schema}\".schema_migrations");
            if (await exists.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not true)
            {
                return 0;
            }
        }
        await using var command = new NpgsqlCommand($"SELECT coalesce(max(version), 0) FROM \"{schema}\".schema_migrations", connection, transaction);
        return Convert.ToInt32(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false), System.Globalization.CultureInfo.InvariantCulture);
    }
}
