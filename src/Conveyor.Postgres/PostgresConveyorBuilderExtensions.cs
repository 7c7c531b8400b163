using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor.Postgres;

/// <summary>Registration of the PostgreSQL backend.</summary>
public static class PostgresConveyorBuilderExtensions
{
    /// <summary>Uses PostgreSQL at <see cref="PostgresBackendOptions.ConnectionString"/> for every role.</summary>
    public static ConveyorBuilder UsePostgres(this ConveyorBuilder builder, Action<PostgresBackendOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configure);
        builder.Services.AddOptions<PostgresBackendOptions>().Configure(configure);
        builder.Services.AddSingleton(sp => new PostgresBackend(
            sp.GetRequiredService<IOptions<PostgresBackendOptions>>().Value,
            sp.GetService<TimeProvider>(),
            sp.GetService<ILogger<PostgresBackend>>()));
        return builder.UseBackend(sp => sp.GetRequiredService<PostgresBackend>());
    }
}
