using Conveyor.Backends;
using Conveyor.Conformance;
using StackExchange.Redis;

namespace Conveyor.Redis.Tests;

/// <summary>Builds each test's Redis backend under a key prefix of its own and deletes its keys afterwards.</summary>
public sealed class RedisTestBackend : IConformanceBackendFactory
{
    private static readonly Lazy<Task<ConnectionMultiplexer>> Shared = new(() => ConnectionMultiplexer.ConnectAsync(RedisUrl.Parse(Url)));

    /// <summary>The test server's URL, from CONVEYOR_TEST_REDIS; fails with instructions when it is not set.</summary>
    public static string Url =>
        Environment.GetEnvironmentVariable("CONVEYOR_TEST_REDIS") is { Length: > 0 } url
            ? url
            : throw new InvalidOperationException(
                "CONVEYOR_TEST_REDIS is not set: the Redis tests need a server. Run 'bash scripts/test.sh' (it starts one), " +
                "or start one by hand with 'source scripts/services/redis.sh' (exports CONVEYOR_TEST_REDIS; " +
                "'bash scripts/services/redis.sh stop' stops it), then run the tests from that shell.");

    public static Task<ConnectionMultiplexer> ConnectionAsync() => Shared.Value;

    public async Task<IConveyorBackend> CreateAsync(TimeProvider time)
    {
        var connection = await ConnectionAsync();
        var backend = new RedisBackend(
            new RedisBackendOptions { Configuration = Url, KeyPrefix = "cvtest-" + Guid.NewGuid().ToString("N") + ":" },
            connection,
            time);
        await backend.MigrateAsync(CancellationToken.None);
        return backend;
    }

    /// <summary>Another instance on <paramref name="backend"/>'s key prefix with a connection of its own, as another
    /// process would open it; disposing it closes that connection and leaves the keys.</summary>
    public async Task<IConveyorBackend> CreatePeerAsync(IConveyorBackend backend, TimeProvider time)
    {
        var redis = (RedisBackend)backend;
        var peer = new RedisBackend(new RedisBackendOptions { Configuration = Url, KeyPrefix = KeyPrefixOf(redis) }, time);
        await peer.MigrateAsync(CancellationToken.None);
        return peer;
    }

    /// <summary>The KeyPrefix option that gives <paramref name="backend"/>'s key base.</summary>
    public static string KeyPrefixOf(RedisBackend backend) => backend.KeyBase[1..^2] + ":";

    public async ValueTask DisposeAsync(IConveyorBackend backend)
    {
        var redis = (RedisBackend)backend;
        await DeleteKeysAsync(redis.KeyBase);
        await redis.DisposeAsync();
    }

    public static async Task DeleteKeysAsync(string keyBase)
    {
        var connection = await ConnectionAsync();
        var db = connection.GetDatabase();
        foreach (var endpoint in connection.GetEndPoints())
        {
            var server = connection.GetServer(endpoint);
            var keys = new List<RedisKey>();
            await foreach (var key in server.KeysAsync(db.Database, pattern: keyBase.Replace("{", "\\{", StringComparison.Ordinal).Replace("}", "\\}", StringComparison.Ordinal) + "*", pageSize: 1000))
            {
                keys.Add(key);
            }
            if (keys.Count > 0)
            {
                await db.KeyDeleteAsync(keys.ToArray());
            }
        }
    }
}
