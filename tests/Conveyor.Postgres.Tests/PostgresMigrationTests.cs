using Conveyor.Backends;
using Conveyor.Sql.Migrations;
using Conveyor.TestBackends;
using Npgsql;

namespace Conveyor.Postgres.Tests;

/// <summary>The embedded migrations against schemas made by the builds before them (SQL in C# strings).</summary>
public class PostgresMigrationTests
{
    [Fact]
    public async Task A_schema_at_the_last_legacy_version_gets_only_the_later_migrations_and_ends_as_a_fresh_one()
    {
        await using var legacy = await LegacySchema.CreateAsync(LegacyPostgresSchema.Migrations.Length);
        await using var fresh = await LegacySchema.CreateAsync(0);

        // Running 001 again would fail ("relation tasks already exists").
        await legacy.Backend.MigrateAsync(CancellationToken.None);
        await fresh.Backend.MigrateAsync(CancellationToken.None);

        Assert.True(PostgresSchema.LatestVersion > LegacyPostgresSchema.Migrations.Length);
        Assert.Equal(PostgresSchema.LatestVersion, await legacy.Backend.GetSchemaVersionAsync(CancellationToken.None));
        Assert.Equal(await DescribeAsync(fresh.Name), await DescribeAsync(legacy.Name));
        Assert.True((await legacy.Backend.CheckHealthAsync(CancellationToken.None)).Healthy);
    }

    [Fact]
    public async Task A_legacy_schema_at_version_1_gets_the_later_migrations_and_ends_as_a_fresh_one()
    {
        await using var legacy = await LegacySchema.CreateAsync(1);
        await using var fresh = await LegacySchema.CreateAsync(0);
        await legacy.Backend.MigrateAsync(CancellationToken.None);
        await fresh.Backend.MigrateAsync(CancellationToken.None);
        Assert.Equal(PostgresSchema.LatestVersion, await legacy.Backend.GetSchemaVersionAsync(CancellationToken.None));
        Assert.Equal(await DescribeAsync(fresh.Name), await DescribeAsync(legacy.Name));
    }

    [Fact]
    public async Task The_embedded_migrations_build_what_the_legacy_ones_built()
    {
        var versions = LegacyPostgresSchema.Migrations.Length;
        await using var legacy = await LegacySchema.CreateAsync(versions);
        var embedded = SqlMigrationSet.FromResources(typeof(PostgresBackend).Assembly, "Conveyor.Postgres.Migrations.");
        await using var upToLegacy = await LegacySchema.CreateAsync(versions,
            (v, schema) => embedded.Migrations[v].Render(PostgresDialect.Instance, new Dictionary<string, string> { ["schema"] = schema }));
        Assert.Equal(await DescribeAsync(legacy.Name), await DescribeAsync(upToLegacy.Name));
    }

    [Fact]
    public async Task Migration_3_counts_the_leases_held_then_as_started_and_leaves_other_rows_unstarted()
    {
        await using var legacy = await LegacySchema.CreateAsync(2);
        var running = Guid.NewGuid();
        var queued = Guid.NewGuid();
        await using (var dataSource = NpgsqlDataSource.Create(PostgresConnectionString.Normalize(TestServers.Postgres)))
        await using (var insert = dataSource.CreateCommand($"""
            INSERT INTO "{legacy.Name}".tasks (id, task, queue, state, attempt, max_attempts, retry_base_ms, retry_max_ms, retry_jitter,
                created_at, lease_owner, lease_token, lease_expires, history)
            VALUES (@running, 't', 'q', 2, 1, 5, 1000, 60000, 0, 1, 'old-worker', 7, 1, '1:1'),
                (@queued, 't', 'q', 1, 0, 5, 1000, 60000, 0, 1, NULL, NULL, NULL, '1:1')
            """))
        {
            insert.Parameters.AddWithValue("running", running);
            insert.Parameters.AddWithValue("queued", queued);
            await insert.ExecuteNonQueryAsync();
        }

        await legacy.Backend.MigrateAsync(CancellationToken.None);

        // The build before spent the attempt at fetch: the lease held across the upgrade stays spent when it runs out.
        Assert.Equal(1, (await legacy.Backend.RequeueExpiredLeasesAsync(CancellationToken.None)).Count);
        var interrupted = await legacy.Backend.GetAsync(running, CancellationToken.None);
        Assert.Equal(TaskState.Queued, interrupted!.State);
        Assert.Equal(1, interrupted.Attempts);
        Assert.Equal(LeaseRules.InterruptedErrorType, Assert.Single(interrupted.Errors).Error.Type);
        var leases = (await legacy.Backend.FetchAsync(new FetchRequest
        {
            WorkerId = "new-worker",
            Queues = [new QueueWeight("q")],
            MaxCount = 2,
            LeaseDuration = TimeSpan.FromMinutes(1),
        }, CancellationToken.None)).ToDictionary(l => l.Message.Id);
        Assert.Equal((2, true, true), (leases[running].Attempt, leases[running].IsRedelivery, leases[running].RecordStartFirst));
        Assert.Equal((1, false, false), (leases[queued].Attempt, leases[queued].IsRedelivery, leases[queued].RecordStartFirst));
    }

    /// <summary>Columns, indexes, table options and recorded versions of a schema, with its name taken out.</summary>
    private static async Task<List<string>> DescribeAsync(string schema)
    {
        await using var dataSource = NpgsqlDataSource.Create(PostgresConnectionString.Normalize(TestServers.Postgres));
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var command = new NpgsqlCommand("""
            SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '') || ' ' || is_identity
            FROM information_schema.columns WHERE table_schema = @schema
            UNION ALL
            SELECT 'index ' || indexname || ': ' || replace(indexdef, @schema, 'S') FROM pg_indexes WHERE schemaname = @schema
            UNION ALL
            SELECT 'table ' || c.relname || ' ' || coalesce(array_to_string(c.reloptions, ','), '')
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = @schema AND c.relkind = 'r'
            ORDER BY 1
            """, connection);
        command.Parameters.AddWithValue("schema", schema);
        var rows = new List<string>();
        await using (var reader = await command.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                rows.Add(reader.GetString(0));
            }
        }
        await using var versions = new NpgsqlCommand($"SELECT string_agg(version::text, ',' ORDER BY version) FROM \"{schema}\".schema_migrations", connection);
        rows.Add("versions " + await versions.ExecuteScalarAsync());
        return rows;
    }

    /// <summary>A schema migrated as the legacy PostgresSchema.ApplyAsync did, up to a version, with a backend on it.</summary>
    private sealed class LegacySchema : IAsyncDisposable
    {
        private LegacySchema(string name) =>
            (Name, Backend) = (name, new PostgresBackend(new PostgresBackendOptions { ConnectionString = TestServers.Postgres, Schema = name }));

        public string Name { get; }

        public PostgresBackend Backend { get; }

        public static Task<LegacySchema> CreateAsync(int version) => CreateAsync(version, (v, _) => LegacyPostgresSchema.Migrations[v]);

        /// <summary>A schema with the migrations 0 … <paramref name="version"/> - 1 that <paramref name="migration"/> gives
        /// (by index and schema name), recorded as the legacy builds recorded them.</summary>
        public static async Task<LegacySchema> CreateAsync(int version, Func<int, string, string> migration)
        {
            var schema = new LegacySchema("t_" + Guid.NewGuid().ToString("N"));
            await using var dataSource = NpgsqlDataSource.Create(PostgresConnectionString.Normalize(TestServers.Postgres));
            await using var connection = await dataSource.OpenConnectionAsync();
            await using var transaction = await connection.BeginTransactionAsync();
            await using (var command = new NpgsqlCommand($"""
                CREATE SCHEMA "{schema.Name}";
                CREATE TABLE "{schema.Name}".schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
                """, connection, transaction))
            {
                await command.ExecuteNonQueryAsync();
            }
            for (var v = 0; v < version; v++)
            {
                await using var migrate = new NpgsqlCommand(
                    $"SET LOCAL search_path TO \"{schema.Name}\";\n{migration(v, schema.Name)}\nINSERT INTO \"{schema.Name}\".schema_migrations (version) VALUES ({v + 1});",
                    connection, transaction);
                await migrate.ExecuteNonQueryAsync();
            }
            await transaction.CommitAsync();
            return schema;
        }

        public async ValueTask DisposeAsync()
        {
            await Backend.DropSchemaAsync(CancellationToken.None);
            await Backend.DisposeAsync();
        }
    }
}
