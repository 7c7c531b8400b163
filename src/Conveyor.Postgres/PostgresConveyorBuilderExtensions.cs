using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Conveyor.Postgres;

/// <summary>Registration of the PostgreSQL backend.</summary>
public static class PostgresConveyorBuilderExtensions
{
    /// <summary>Uses PostgreSQL at <see cref="PostgresBackendOptions.ConnectionString"/> for every role.</summary>
    public static ConveyorBuilder UsePostgres(this ConveyorBuilder builder, Action<PostgresBackendOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        return Use(builder, configure, _ => null);
    }

    /// <summary>Uses the app's own <see cref="NpgsqlDataSource"/>, the one registered in the service collection, for every
    /// role. Conveyor does not dispose it and leaves its connections' settings as they are: its statements name their
    /// tables with <see cref="PostgresBackendOptions.Schema"/>. <see cref="PostgresBackendOptions.ConnectionString"/> is
    /// then not used.</summary>
    public static ConveyorBuilder UsePostgresFromServices(this ConveyorBuilder builder, Action<PostgresBackendOptions>? configure = null) =>
        Use(builder, configure, sp => sp.GetService<NpgsqlDataSource>() ?? throw new InvalidOperationException(
            "UsePostgresFromServices needs an NpgsqlDataSource registered in the service collection (AddNpgsqlDataSource, or AddSingleton); register one, or call UsePostgres with a ConnectionString."));

    /// <summary>Registers the backend on <paramref name="dataSource"/>'s data source, or one of its own when that gives null.</summary>
    private static ConveyorBuilder Use(ConveyorBuilder builder, Action<PostgresBackendOptions>? configure, Func<IServiceProvider, NpgsqlDataSource?> dataSource)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var options = builder.Services.AddOptions<PostgresBackendOptions>();
        if (configure is not null)
        {
            options.Configure(configure);
        }
        builder.Services.AddSingleton(sp => new PostgresBackend(
            sp.GetRequiredService<IOptions<PostgresBackendOptions>>().Value,
            dataSource(sp),
            sp.GetService<TimeProvider>(),
            sp.GetService<ILogger<PostgresBackend>>()));
        return builder.UseBackend(sp => sp.GetRequiredService<PostgresBackend>());
    }
}
