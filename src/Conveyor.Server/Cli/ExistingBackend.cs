using System.Data.Common;
using Conveyor.Backends;
using Conveyor.Server.Configuration;
using Conveyor.Server.Hosting;

namespace Conveyor.Server.Cli;

/// <summary>
/// Backend access for the commands that read or act on what is there (<c>info</c>, <c>tasks</c>, <c>task</c>,
/// <c>workers</c>, <c>schedules</c>, <c>limits</c>, <c>cancel</c>, <c>pause</c>, <c>resume</c>): they never create a database or
/// migrate a schema. A SQLite file that does not exist is not opened (opening would create it); a database whose
/// schema is missing or older fails the backend's health check. Either way the command names the database and exits 1.
/// A Redis keyspace has no schema: an empty one reads as empty.
/// </summary>
internal static class ExistingBackend
{
    public static Task<int> RunAsync(Dictionary<string, string?> flags, TextWriter error,
        Func<IServiceProvider, Task<int>> run, CancellationToken cancellationToken) => RunAsync(flags, error, null, run, cancellationToken);

    /// <summary>As the other overload, with <paramref name="refuse"/> asked first, before the database is looked for: an
    /// exit code it returns ends the command (a setting the command needs is missing).</summary>
    public static async Task<int> RunAsync(Dictionary<string, string?> flags, TextWriter error, Func<IServiceProvider, int?>? refuse,
        Func<IServiceProvider, Task<int>> run, CancellationToken cancellationToken)
    {
        IHost host;
        try
        {
            host = ConveyorHosts.BuildHost(HostRole.Tool, flags);
        }
        catch (ConveyorConfigurationException ex)
        {
            return ConveyorCommandLine.Invalid(error, ex);
        }
        using (host)
        {
            if (refuse?.Invoke(host.Services) is { } refused)
            {
                return refused;
            }
            var location = host.Services.GetRequiredService<BackendLocation>();
            if (MissingFile(location) is { } missing)
            {
                await error.WriteLineAsync($"conveyor: no database at {missing.Url} ({Path.GetFullPath(missing.Path)}): nothing to read. " +
                    "Start 'conveyor server' or run 'conveyor migrate' to create it, or point DATABASE_URL (--database-url) at the one to read.").ConfigureAwait(false);
                return ExitCodes.Failure;
            }
            try
            {
                var backend = host.Services.GetRequiredService<IConveyorBackend>();
                var health = await backend.CheckHealthAsync(cancellationToken).ConfigureAwait(false);
                if (!health.Healthy)
                {
                    await error.WriteLineAsync($"conveyor: cannot read {Describe(location)}: {health.Description}").ConfigureAwait(false);
                    return ExitCodes.Failure;
                }
                return await run(host.Services).ConfigureAwait(false);
            }
            catch (DbException ex)
            {
                await error.WriteLineAsync($"conveyor: database error on {Describe(location)}: {ex.Message}").ConfigureAwait(false);
                return ExitCodes.Failure;
            }
        }
    }

    /// <summary>The SQLite file of <paramref name="location"/> (itself, or a broker's store) when it does not exist.</summary>
    private static SqliteDatabase? MissingFile(BackendLocation location) => location switch
    {
        SqliteDatabase sqlite when !File.Exists(sqlite.Path) => sqlite,
        RabbitMqBroker { Store: SqliteDatabase sqlite } when !File.Exists(sqlite.Path) => sqlite,
        _ => null,
    };

    /// <summary>The database in words, without credentials.</summary>
    private static string Describe(BackendLocation location) => location switch
    {
        SqliteDatabase sqlite => sqlite.Url,
        PostgresDatabase postgres => $"PostgreSQL schema {postgres.Schema ?? "conveyor"}",
        RabbitMqBroker broker => $"RabbitMQ with {Describe(broker.Store)}",
        RedisKeyspace => "Redis",
        _ => location.GetType().Name,
    };
}
