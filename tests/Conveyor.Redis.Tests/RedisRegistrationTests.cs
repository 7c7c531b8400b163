using Conveyor.Backends;
using Conveyor.TestBackends;
using Microsoft.Extensions.DependencyInjection;
using StackExchange.Redis;

namespace Conveyor.Redis.Tests;

public sealed class RedisRegistrationTests
{
    [Fact]
    public async Task Backend_from_services_uses_the_apps_own_connection_and_leaves_it_open()
    {
        var appConnection = await ConnectionMultiplexer.ConnectAsync(RedisUrl.Parse(TestServers.Redis));
        var keyspace = TestServers.FreshRedis();
        var services = new ServiceCollection();
        services.AddSingleton<IConnectionMultiplexer>(appConnection);
        // A Configuration that points nowhere: the connection from the services is the one used.
        services.AddConveyorClient().AddNoopTask().UseRedisFromServices(o =>
        {
            o.KeyPrefix = keyspace.KeyPrefix!;
            o.Configuration = "redis://127.0.0.1:1";
        });
        var provider = services.BuildServiceProvider();
        try
        {
            var backend = provider.GetRequiredService<IConveyorBackend>();
            await backend.MigrateAsync(CancellationToken.None);
            var client = provider.GetRequiredService<ITaskClient>();

            var result = await client.EnqueueAsync(NoopTask.Name);

            Assert.Equal(TaskState.Queued, (await client.GetAsync(result.Id))!.State);
        }
        finally
        {
            await provider.DisposeAsync();
            await keyspace.DropAsync(CancellationToken.None);
        }
        Assert.True(appConnection.IsConnected, "Conveyor closed the app's connection");
        await appConnection.GetDatabase().PingAsync();
        await appConnection.DisposeAsync();
    }

    [Fact]
    public void Backend_from_services_without_a_connection_says_what_to_register()
    {
        var services = new ServiceCollection();
        services.AddConveyorClient().UseRedisFromServices();
        using var provider = services.BuildServiceProvider();

        var error = Assert.Throws<InvalidOperationException>(() => provider.GetRequiredService<IConveyorBackend>());

        Assert.Contains("needs an IConnectionMultiplexer registered", error.Message, StringComparison.Ordinal);
    }
}
