using Conveyor.Backends;
using Conveyor.Conformance;
using Conveyor.TestBackends;
using StackExchange.Redis;

namespace Conveyor.Redis.Tests;

/// <summary>Builds each test's Redis backend under a key prefix of its own, on a connection shared by the tests, and
/// deletes its keys afterwards.</summary>
public sealed class RedisTestBackend : IConformanceBackendFactory
{
    // Admin commands on: the tests change server settings (CONFIG SET) and kill connections (CLIENT KILL).
    private static readonly Lazy<Task<ConnectionMultiplexer>> Shared = new(() => ConnectionMultiplexer.ConnectAsync(WithAdmin(RedisUrl.Parse(TestServers.Redis))));

    private static ConfigurationOptions WithAdmin(ConfigurationOptions options)
    {
        options.AllowAdmin = true;
        return options;
    }

    public static Task<ConnectionMultiplexer> ConnectionAsync() => Shared.Value;

    public async Task<IConveyorBackend> CreateAsync(TimeProvider time) =>
        await this.MigrateOrDisposeAsync(TestServers.FreshRedis().Create(await ConnectionAsync(), time));

    /// <summary>Another instance on <paramref name="backend"/>'s key prefix with a connection of its own, as another
    /// process would open it; disposing it closes that connection and leaves the keys.</summary>
    public async Task<IConveyorBackend> CreatePeerAsync(IConveyorBackend backend, TimeProvider time)
    {
        var peer = KeyspaceOf((RedisBackend)backend).Create(connection: null, time);
        await peer.MigrateAsync(CancellationToken.None);
        return peer;
    }

    /// <summary>The keyspace of <paramref name="backend"/>, on the test server.</summary>
    public static RedisKeyspace KeyspaceOf(RedisBackend backend) => new(TestServers.Redis, backend.KeyBase[1..^2] + ":");

    public async ValueTask DisposeAsync(IConveyorBackend backend)
    {
        var redis = (RedisBackend)backend;
        await redis.DeleteKeysAsync(CancellationToken.None);
        await redis.DisposeAsync();
    }
}
