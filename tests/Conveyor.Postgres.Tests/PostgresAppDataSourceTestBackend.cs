using Conveyor.Backends;
using Conveyor.Conformance;
using Conveyor.TestBackends;
using Npgsql;

namespace Conveyor.Postgres.Tests;

/// <summary>
/// Builds each test's backend as <c>UsePostgresFromServices</c> does: on a data source the test owns, as an app would,
/// whose connections' search_path names a schema that does not exist, so that a statement that did not name Conveyor's
/// schema fails. Checks, as it disposes each instance, that the data source is still open.
/// </summary>
public sealed class PostgresAppDataSourceTestBackend : IConformanceBackendFactory
{
    // Each instance's data source.
    private readonly Dictionary<IConveyorBackend, NpgsqlDataSource> _dataSources = [];

    /// <summary>Creates a schema of the app's holding tables named as Conveyor's, with other columns; returns its name.</summary>
    public static async Task<string> CreateAppSchemaAsync()
    {
        var schema = "app_" + Guid.NewGuid().ToString("N");
        await using var dataSource = NpgsqlDataSource.Create(PostgresConnectionString.Normalize(TestServers.Postgres));
        await using var command = dataSource.CreateCommand($"""
            CREATE SCHEMA "{schema}";
            CREATE TABLE "{schema}".tasks (app_task text);
            CREATE TABLE "{schema}".queues (app_queue text);
            CREATE TABLE "{schema}".workers (app_worker text);
            CREATE TABLE "{schema}".leaders (app_leader text);
            """);
        await command.ExecuteNonQueryAsync();
        return schema;
    }

    /// <summary>A data source as an app builds one, whose connections' search_path is <paramref name="appSchema"/>.</summary>
    public static NpgsqlDataSource CreateAppDataSource(string appSchema) =>
        NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(PostgresConnectionString.Normalize(TestServers.Postgres))
        {
            SearchPath = appSchema,
        });

    public Task<IConveyorBackend> CreateAsync(TimeProvider time) => this.MigrateOrDisposeAsync(Create("t_" + Guid.NewGuid().ToString("N"), time));

    /// <summary>Another instance on <paramref name="backend"/>'s schema, on another data source of the app's, as another
    /// process would open it.</summary>
    public Task<IConveyorBackend> CreatePeerAsync(IConveyorBackend backend, TimeProvider time) =>
        Task.FromResult<IConveyorBackend>(Create(((PostgresBackend)backend).Schema, time));

    public async ValueTask DisposeAsync(IConveyorBackend backend)
    {
        try
        {
            await ((PostgresBackend)backend).DropSchemaAsync(CancellationToken.None);
        }
        finally
        {
            await DisposePeerAsync(backend);
        }
    }

    /// <summary>Disposes the backend, then uses its data source, which the backend must have left open, and disposes
    /// that as the app would.</summary>
    public async ValueTask DisposePeerAsync(IConveyorBackend peer)
    {
        var dataSource = _dataSources[peer];
        await ((PostgresBackend)peer).DisposeAsync();
        await using (var command = dataSource.CreateCommand("SELECT 1"))
        {
            await command.ExecuteNonQueryAsync();
        }
        await dataSource.DisposeAsync();
    }

    private PostgresBackend Create(string schema, TimeProvider time)
    {
        // Named for the app, and never created: Conveyor's statements must not need a search_path.
        var dataSource = CreateAppDataSource("app_without_tables");
        var backend = new PostgresBackend(new PostgresBackendOptions { Schema = schema }, dataSource, time);
        _dataSources[backend] = dataSource;
        return backend;
    }
}
