using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor.Sqlite;

/// <summary>Registration of the SQLite backend.</summary>
public static class SqliteConveyorBuilderExtensions
{
    /// <summary>Uses SQLite at <see cref="SqliteBackendOptions.Path"/> for every role.</summary>
    public static ConveyorBuilder UseSqlite(this ConveyorBuilder builder, Action<SqliteBackendOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var options = builder.Services.AddOptions<SqliteBackendOptions>();
        if (configure is not null)
        {
            options.Configure(configure);
        }
        builder.Services.AddSingleton(sp =>
        {
            var logger = sp.GetService<ILogger<SqliteBackend>>();
            var backend = new SqliteBackend(sp.GetRequiredService<IOptions<SqliteBackendOptions>>().Value, sp.GetService<TimeProvider>(), logger);
            SqliteWatchedFolder.WarnIfWatched(sp.GetService<IConfiguration>(), backend.DatabasePath, logger);
            return backend;
        });
        return builder.UseBackend(sp => sp.GetRequiredService<SqliteBackend>());
    }
}
