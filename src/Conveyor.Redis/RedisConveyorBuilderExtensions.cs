using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Conveyor.Redis;

/// <summary>Registration of the Redis backend.</summary>
public static class RedisConveyorBuilderExtensions
{
    /// <summary>Uses Redis at <see cref="RedisBackendOptions.Configuration"/> for every role.</summary>
    public static ConveyorBuilder UseRedis(this ConveyorBuilder builder, Action<RedisBackendOptions>? configure = null) =>
        Use(builder, configure, _ => null);

    /// <summary>Uses the app's own connection to Redis, the <see cref="IConnectionMultiplexer"/> registered in the service
    /// collection (Conveyor does not dispose it); <see cref="RedisBackendOptions.Configuration"/> is then not used.</summary>
    public static ConveyorBuilder UseRedisFromServices(this ConveyorBuilder builder, Action<RedisBackendOptions>? configure = null) =>
        Use(builder, configure, sp => sp.GetService<IConnectionMultiplexer>() ?? throw new InvalidOperationException(
            "UseRedisFromServices needs an IConnectionMultiplexer registered in the service collection; register one, or call UseRedis with a Configuration."));

    /// <summary>Registers the backend on <paramref name="connection"/>'s multiplexer, or one of its own when that gives null.</summary>
    private static ConveyorBuilder Use(ConveyorBuilder builder, Action<RedisBackendOptions>? configure, Func<IServiceProvider, IConnectionMultiplexer?> connection)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var options = builder.Services.AddOptions<RedisBackendOptions>();
        if (configure is not null)
        {
            options.Configure(configure);
        }
        builder.Services.AddSingleton(sp => new RedisBackend(
            sp.GetRequiredService<IOptions<RedisBackendOptions>>().Value,
            connection(sp),
            sp.GetService<TimeProvider>(),
            sp.GetService<ILogger<RedisBackend>>()));
        return builder.UseBackend(sp => sp.GetRequiredService<RedisBackend>());
    }
}
