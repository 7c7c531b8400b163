namespace Conveyor.Postgres.Tests;

/// <summary>The PostgreSQL migrations exactly as the builds before Conveyor.Sql held them (C# strings in
/// PostgresSchema.cs, recorded in schema_migrations): schemas made by those builds must be recognised by this one.</summary>
internal static class LegacyPostgresSchema
{
    /// <summary>Each entry upgrades from version i to i+1.</summary>
    public static readonly string[] Migrations =
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
}
