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
}
