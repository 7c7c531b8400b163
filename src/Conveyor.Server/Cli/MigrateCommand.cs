using System.CommandLine;
using System.Data.Common;
using Conveyor.Backends;
using Conveyor.Server.Configuration;
using Conveyor.Server.Hosting;

namespace Conveyor.Server.Cli;

/// <summary><c>conveyor migrate</c>, and the backend access of the commands that write (<c>enqueue</c>, <c>retry</c>, <c>purge</c>,
/// schedule actions), which may be the first to touch a new database; the others use <see cref="ExistingBackend"/>.</summary>
internal static class MigrateCommand
{
    public static Command Create(ConfigurationFlags global, TextWriter output, TextWriter error)
    {
        var command = new Command("migrate", "Create or upgrade the database schema, then exit. Safe to run again and while other processes use the database.");
        var flags = new ConfigurationFlags();
        command.SetAction((parse, cancellationToken) => WithBackendAsync(ConveyorCommandLine.Flags(parse, global, flags), error, async services =>
        {
            var backend = services.GetRequiredService<IConveyorBackend>();
            var health = await backend.CheckHealthAsync(cancellationToken).ConfigureAwait(false);
            output.WriteLine($"Migrated: {health.Description}");
            return health.Healthy ? ExitCodes.Success : ExitCodes.Failure;
        }, cancellationToken));
        return command;
    }

    /// <summary>Builds a host that runs nothing in the background, migrates the backend (the tools may be the first
    /// to touch a new database), runs <paramref name="run"/> and disposes the host, which flushes the backend.</summary>
    public static async Task<int> WithBackendAsync(Dictionary<string, string?> flags, TextWriter error,
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
            try
            {
                await host.Services.GetRequiredService<IConveyorBackend>().MigrateAsync(cancellationToken).ConfigureAwait(false);
                return await run(host.Services).ConfigureAwait(false);
            }
            catch (DbException ex)
            {
                error.WriteLine($"conveyor: database error: {ex.Message}");
                return ExitCodes.Failure;
            }
        }
    }
}
