using Conveyor.Backends;
using Conveyor.Conformance;
using Conveyor.Sqlite;
using Conveyor.TestBackends;

namespace Conveyor.RabbitMQ.Tests;

/// <summary>
/// Builds each test's backend: RabbitMQ (exchanges and queues under a prefix of the test's own) paired
/// with a SQLite store on a fresh file; deletes both afterwards.
/// </summary>
public sealed class RabbitMqTestBackend : IConformanceBackendFactory
{
    private static readonly string Folder = Path.Combine(Path.GetTempPath(), "conveyor-rabbitmq-tests");

    public Task<IConveyorBackend> CreateAsync(TimeProvider time) =>
        this.MigrateOrDisposeAsync(TestServers.FreshRabbitMq(new SqliteDatabase(Path.Combine(Folder, Guid.NewGuid().ToString("N") + ".db"))).Create(time));

    /// <summary>Another instance on <paramref name="backend"/>'s prefix and store file, as another process would open
    /// them: a broker connection and a SQLite connection of its own. Disposing it leaves the broker objects and the file.</summary>
    public async Task<IConveyorBackend> CreatePeerAsync(IConveyorBackend backend, TimeProvider time)
    {
        var peer = BrokerOf((RabbitMqBackend)backend).Create(time);
        await peer.MigrateAsync(CancellationToken.None);
        return peer;
    }

    /// <summary>Deletes the broker objects through the instance that declared the test's queues, then its store.</summary>
    public async ValueTask DisposeAsync(IConveyorBackend backend)
    {
        var rabbit = (RabbitMqBackend)backend;
        try
        {
            await rabbit.DeleteBrokerObjectsAsync(CancellationToken.None);
        }
        finally
        {
            await rabbit.DisposeAsync();
            await BrokerOf(rabbit).Store.DropAsync(CancellationToken.None);
        }
    }

    /// <summary>The broker and store of <paramref name="backend"/>, on the test broker.</summary>
    private static RabbitMqBroker BrokerOf(RabbitMqBackend backend) =>
        new(TestServers.Amqp, new SqliteDatabase(((SqliteBackend)backend.StoreBackend).DatabasePath), backend.Prefix);
}
