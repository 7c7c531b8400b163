using Npgsql;

namespace Conveyor.Postgres.Tests;

/// <summary>The embedded migrations against schemas made by the builds before them (SQL in C# strings).</summary>
public class PostgresMigrationTests
{
    [Fact]
    public async Task A_schema_at_the_last_legacy_version_is_up_to_date_and_not_migrated_again()
    {
        await using var legacy = await LegacySchema.CreateAsync(LegacyPostgresSchema.Migrations.Length);
        var before = await DescribeAsync(legacy.Name);

        // Running 001 again would fail ("relation tasks already exists").
        await legacy.Backend.MigrateAsync(CancellationToken.None);

        Assert.Equal(LegacyPostgresSchema.Migrations.Length, await legacy.Backend.GetSchemaVersionAsync(CancellationToken.None));
        Assert.Equal(before, await DescribeAsync(legacy.Name));
        Assert.True((await legacy.Backend.CheckHealthAsync(CancellationToken.None)).Healthy);
    }

    [Fact]
    public async Task A_legacy_schema_at_version_1_gets_migration_2_and_ends_as_a_fresh_one()
    {
        await using var legacy = await LegacySchema.CreateAsync(1);
        await using var fresh = await LegacySchema.CreateAsync(0);
        await legacy.Backend.MigrateAsync(CancellationToken.None);
        await fresh.Backend.MigrateAsync(CancellationToken.None);
        Assert.Equal(2, await legacy.Backend.GetSchemaVersionAsync(CancellationToken.None));
        Assert.Equal(await DescribeAsync(fresh.Name), await DescribeAsync(legacy.Name));
    }

    [Fact]
    public async Task The_embedded_migrations_build_what_the_legacy_ones_built()
    {
        await using var legacy = await LegacySchema.CreateAsync(LegacyPostgresSchema.Migrations.Length);
        await using var fresh = await LegacySchema.CreateAsync(0);
        await fresh.Backend.MigrateAsync(CancellationToken.None);
        Assert.Equal(await DescribeAsync(legacy.Name), await DescribeAsync(fresh.Name));
    }

    /// <summary>Columns, indexes, table options and recorded versions of a schema, with its name taken out.</summary>
    private static async Task<List<string>> DescribeAsync(string schema)
    {
        await using var dataSource = NpgsqlDataSource.Create(PostgresConnectionString.Normalize(PostgresTestBackend.ConnectionString));
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
            (Name, Backend) = (name, new PostgresBackend(new PostgresBackendOptions { ConnectionString = PostgresTestBackend.ConnectionString, Schema = name }));

        public string Name { get; }

        public PostgresBackend Backend { get; }

        public static async Task<LegacySchema> CreateAsync(int version)
        {
            var schema = new LegacySchema("t_" + Guid.NewGuid().ToString("N"));
            await using var dataSource = NpgsqlDataSource.Create(PostgresConnectionString.Normalize(PostgresTestBackend.ConnectionString));
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
                    $"SET LOCAL search_path TO \"{schema.Name}\";\n{LegacyPostgresSchema.Migrations[v]}\nINSERT INTO \"{schema.Name}\".schema_migrations (version) VALUES ({v + 1});",
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
