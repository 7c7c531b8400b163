using Conveyor.Backends;
using Conveyor.TestBackends;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Conveyor.Postgres.Tests;

/// <summary><c>UsePostgresFromServices</c>: the backend on the app's own <see cref="NpgsqlDataSource"/>, which Conveyor
/// must neither dispose nor change. Its connections' search_path names the app's schema, where tables of the same names
/// as Conveyor's stand.</summary>
public sealed class PostgresRegistrationTests : IAsyncLifetime
{
    private readonly string _schema = "t_" + Guid.NewGuid().ToString("N");
    private string _appSchema = "";

    public async Task InitializeAsync() => _appSchema = await PostgresAppDataSourceTestBackend.CreateAppSchemaAsync();

    public async Task DisposeAsync()
    {
        await using var dataSource = NpgsqlDataSource.Create(PostgresConnectionString.Normalize(TestServers.Postgres));
        await using var command = dataSource.CreateCommand($"DROP SCHEMA \"{_appSchema}\" CASCADE; DROP SCHEMA IF EXISTS \"{_schema}\" CASCADE");
        await command.ExecuteNonQueryAsync();
    }

    [Fact]
    public async Task Backend_from_services_uses_the_apps_data_source_and_leaves_it_open()
    {
        await using var appDataSource = PostgresAppDataSourceTestBackend.CreateAppDataSource(_appSchema);
        var services = new ServiceCollection();
        services.AddSingleton(appDataSource);
        // A connection string that points nowhere: the data source from the services is the one used.
        services.AddConveyorClient().AddNoopTask().UsePostgresFromServices(o =>
        {
            o.Schema = _schema;
            o.ConnectionString = "Host=127.0.0.1;Port=1";
        });
        var provider = services.BuildServiceProvider();
        try
        {
            var backend = provider.GetRequiredService<IConveyorBackend>();
            await backend.MigrateAsync(CancellationToken.None);
            var client = provider.GetRequiredService<ITaskClient>();

            var result = await client.EnqueueAsync(NoopTask.Name);

            Assert.Equal(TaskState.Queued, (await client.GetAsync(result.Id))!.State);
            Assert.Single((await backend.Store.ListAsync(new TaskQuery(), CancellationToken.None)).Items);
        }
        finally
        {
            await provider.DisposeAsync();
        }
        // Open after Conveyor's disposal, and the app's own tables of the same names untouched.
        await using var command = appDataSource.CreateCommand("SELECT (SELECT count(*) FROM tasks) + (SELECT count(*) FROM queues)");
        Assert.Equal(0L, await command.ExecuteScalarAsync());
        await using var conveyorTasks = appDataSource.CreateCommand($"SELECT count(*) FROM \"{_schema}\".tasks");
        Assert.Equal(1L, await conveyorTasks.ExecuteScalarAsync());
    }

    [Fact]
    public async Task Every_role_on_the_apps_data_source_leaves_its_connection_settings_as_they_were()
    {
        // A setting Conveyor made on the one connection would stay on it.
        await using var appDataSource = CreateOneConnectionAppDataSource();
        var before = await ReadSessionAsync(appDataSource);
        await using (var backend = new PostgresBackend(new PostgresBackendOptions { Schema = _schema }, appDataSource))
        {
            await backend.MigrateAsync(CancellationToken.None);
            var message = new TaskMessage { Id = Guid.CreateVersion7(), Task = "t", CreatedAt = DateTimeOffset.UtcNow };
            await backend.EnqueueAsync([message], CancellationToken.None);
            var request = new FetchRequest { WorkerId = "w", Queues = [new QueueWeight(QueueNames.Default)], MaxCount = 1, LeaseDuration = TimeSpan.FromSeconds(30) };
            var lease = Assert.Single(await backend.FetchAsync(request, CancellationToken.None));
            await backend.StartAsync([lease.Ref], CancellationToken.None);
            await backend.CompleteAsync([new Completion { Lease = lease.Ref, Kind = CompletionKind.Succeeded, Attempt = 1, At = DateTimeOffset.UtcNow }], CancellationToken.None);
            await backend.HeartbeatAsync(new WorkerInfo { Id = "w", Host = "h", HeartbeatAt = DateTimeOffset.UtcNow }, CancellationToken.None);
            Assert.True(await backend.TryAcquireLeadershipAsync("scheduler", "w", TimeSpan.FromSeconds(15), CancellationToken.None));
            Assert.Equal(TaskState.Succeeded, (await backend.GetAsync(message.Id, CancellationToken.None))!.State);
            Assert.Single((await backend.ListAsync(new TaskQuery(), CancellationToken.None)).Items);
            Assert.Single(await backend.GetQueuesAsync(CancellationToken.None));
            Assert.True((await backend.CheckHealthAsync(CancellationToken.None)).Healthy);
        }

        var after = await ReadSessionAsync(appDataSource);
        Assert.Equal(before.ProcessId, after.ProcessId);
        Assert.Equal(before, after);
        Assert.Equal(_appSchema, after.SearchPath);
    }

    [Fact]
    public async Task Listener_stops_listening_before_its_connection_goes_back_to_the_apps_pool()
    {
        // A LISTEN left on the one connection would stay on it.
        await using var appDataSource = CreateOneConnectionAppDataSource();
        var before = await ReadSessionAsync(appDataSource);
        await using (var backend = new PostgresBackend(new PostgresBackendOptions { Schema = _schema }, appDataSource))
        {
            // The listener takes the pool's one connection, so nothing else runs on the app's pool meanwhile.
            await using var subscription = await backend.Notifier.SubscribeAsync(NotifierChannels.Ready, _ => { }, CancellationToken.None);
            await using var monitor = NpgsqlDataSource.Create(PostgresConnectionString.Normalize(TestServers.Postgres));
            await using var lastQuery = monitor.CreateCommand("SELECT query FROM pg_stat_activity WHERE pid = @pid");
            lastQuery.Parameters.AddWithValue("pid", before.ProcessId);
            Assert.Equal($"LISTEN \"{_schema}_wake\"", await lastQuery.ExecuteScalarAsync());
        }

        var after = await ReadSessionAsync(appDataSource);
        Assert.Equal(before.ProcessId, after.ProcessId);
        Assert.Equal(0L, after.Listening);
    }

    [Fact]
    public void Backend_from_services_without_a_data_source_says_what_to_register()
    {
        var services = new ServiceCollection();
        services.AddConveyorClient().UsePostgresFromServices();
        using var provider = services.BuildServiceProvider();

        var error = Assert.Throws<InvalidOperationException>(() => provider.GetRequiredService<IConveyorBackend>());

        Assert.Contains("needs an NpgsqlDataSource registered", error.Message, StringComparison.Ordinal);
    }

    /// <summary>An app's data source of one physical connection, not reset when it goes back to the pool, so that what
    /// a user of the pool left on the session is there for the next.</summary>
    private NpgsqlDataSource CreateOneConnectionAppDataSource() =>
        NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(PostgresConnectionString.Normalize(TestServers.Postgres))
        {
            SearchPath = _appSchema,
            NoResetOnClose = true,
            MaxPoolSize = 1,
        });

    /// <summary>The session of the pool's connection: its backend process, the settings a backend could change, and how
    /// many channels it listens on.</summary>
    private static async Task<Session> ReadSessionAsync(NpgsqlDataSource dataSource)
    {
        await using var command = dataSource.CreateCommand(
            "SELECT pg_backend_pid(), current_setting('search_path'), current_setting('synchronous_commit'), (SELECT count(*) FROM pg_listening_channels())");
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync());
        return new Session(reader.GetInt32(0), reader.GetString(1), reader.GetString(2), reader.GetInt64(3));
    }

    private sealed record Session(int ProcessId, string SearchPath, string SynchronousCommit, long Listening);
}
