using Conveyor.Backends;
using Conveyor.Conformance;
using Conveyor.Sqlite;

namespace Conveyor.RabbitMQ.Tests;

/// <summary>
/// Builds each test's backend: RabbitMQ (exchanges and queues under a prefix of the test's own) paired
/// with a SQLite store on a fresh file; deletes both afterwards.
/// </summary>
public sealed class RabbitMqTestBackend : IConformanceBackendFactory
{
    public const string Variable = "CONVEYOR_TEST_AMQP";

    private static readonly string Folder = Path.Combine(Path.GetTempPath(), "conveyor-rabbitmq-tests");

    /// <summary>The test broker's URL; fails (never skips) when it is not set.</summary>
    public static string Url =>
        Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } value
            ? value
            : throw new InvalidOperationException(
                $"{Variable} is not set, so the RabbitMQ tests have no broker. Start one with "
                + "'source scripts/services/rabbitmq.sh' (exports the variable into your shell) or "
                + "'export CONVEYOR_TEST_AMQP=\"$(bash scripts/services/rabbitmq.sh start)\"', or set it to an amqp://user:pass@host:port/ URL; "
                + "'bash scripts/test.sh' starts it by itself.");

    public async Task<IConveyorBackend> CreateAsync(TimeProvider time)
    {
        var url = Url;
        var store = new SqliteBackend(new SqliteBackendOptions { Path = Path.Combine(Folder, Guid.NewGuid().ToString("N") + ".db") }, time);
        var backend = new RabbitMqBackend(store, new RabbitMqBackendOptions
        {
            Url = url,
            Prefix = "t." + Guid.NewGuid().ToString("N"),
            OwnsStore = false,
        }, time);
        try
        {
            await backend.MigrateAsync(CancellationToken.None);
        }
        catch
        {
            await DisposeAsync(backend);
            throw;
        }
        return backend;
    }

    /// <summary>Another instance on <paramref name="backend"/>'s prefix and store file, as another process would open
    /// them: a broker connection and a SQLite connection of its own. Disposing it leaves the broker objects and the file.</summary>
    public async Task<IConveyorBackend> CreatePeerAsync(IConveyorBackend backend, TimeProvider time)
    {
        var rabbit = (RabbitMqBackend)backend;
        var store = new SqliteBackend(new SqliteBackendOptions { Path = ((SqliteBackend)rabbit.StoreBackend).DatabasePath }, time);
        var peer = new RabbitMqBackend(store, new RabbitMqBackendOptions
        {
            Url = Url,
            Prefix = rabbit.Prefix,
            OwnsStore = true,
        }, time);
        await peer.MigrateAsync(CancellationToken.None);
        return peer;
    }

    public async ValueTask DisposeAsync(IConveyorBackend backend)
    {
        var rabbit = (RabbitMqBackend)backend;
        var store = (SqliteBackend)rabbit.StoreBackend;
        try
        {
            await rabbit.DeleteBrokerObjectsAsync(CancellationToken.None);
        }
        finally
        {
            await rabbit.DisposeAsync();
            store.Dispose();
            foreach (var suffix in new[] { "", "-wal", "-shm", "-journal" })
            {
                File.Delete(store.DatabasePath + suffix);
            }
        }
    }
}
