using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor.Redis;

/// <summary>Registration of the Redis backend.</summary>
public static class RedisConveyorBuilderExtensions
{
    /// <summary>Uses Redis at <see cref="RedisBackendOptions.Configuration"/> for every role.</summary>
    public static ConveyorBuilder UseRedis(this ConveyorBuilder builder, Action<RedisBackendOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var options = builder.Services.AddOptions<RedisBackendOptions>();
        if (configure is not null)
        {
            options.Configure(configure);
        }
        builder.Services.AddSingleton(sp => new RedisBackend(
            sp.GetRequiredService<IOptions<RedisBackendOptions>>().Value,
            sp.GetService<TimeProvider>(),
            sp.GetService<ILogger<RedisBackend>>()));
        return builder.UseBackend(sp => sp.GetRequiredService<RedisBackend>());
    }

    /// <summary>Uses the app's own connection to Redis, the <see cref="StackExchange.Redis.IConnectionMultiplexer"/>
    /// registered in the service collection (Conveyor does not dispose it); <see cref="RedisBackendOptions.Configuration"/>
    /// is then not used.</summary>
    public static ConveyorBuilder UseRedisFromServices(this ConveyorBuilder builder, Action<RedisBackendOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var options = builder.Services.AddOptions<RedisBackendOptions>();
        if (configure is not null)
        {
            options.Configure(configure);
        }
        builder.Services.AddSingleton(sp => new RedisBackend(
            sp.GetRequiredService<IOptions<RedisBackendOptions>>().Value,
            sp.GetService<StackExchange.Redis.IConnectionMultiplexer>() ?? throw new InvalidOperationException(
                "UseRedisFromServices needs an IConnectionMultiplexer registered in the service collection; register one, or call UseRedis with a Configuration."),
            sp.GetService<TimeProvider>(),
            sp.GetService<ILogger<RedisBackend>>()));
        return builder.UseBackend(sp => sp.GetRequiredService<RedisBackend>());
    }
}
