using System.CommandLine;
using Conveyor.Server.Configuration;
using Conveyor.Server.Hosting;
using Microsoft.Extensions.Options;

namespace Conveyor.Server.Cli;

/// <summary><c>conveyor worker</c>: a worker (and a scheduler candidate) without HTTP.</summary>
internal static class WorkerCommand
{
    public static Command Create(ConfigurationFlags global, TextWriter output, TextWriter error)
    {
        var command = new Command("worker", "Run a worker without the HTTP API: it takes tasks from the database and runs the built-in handlers. " +
            "It also takes part in electing the one scheduler.");
        var flags = new ConfigurationFlags();
        ConveyorCommandLine.AddWorkerOptions(command, flags);
        command.SetAction((parse, _) => RunAsync(ConveyorCommandLine.Flags(parse, global, flags), output, error));
        return command;
    }

    private static async Task<int> RunAsync(Dictionary<string, string?> flags, TextWriter output, TextWriter error)
    {
        IHost host;
        try
        {
            host = ConveyorHosts.BuildHost(HostRole.Worker, flags);
        }
        catch (ConveyorConfigurationException ex)
        {
            return ConveyorCommandLine.Invalid(error, ex);
        }
        using (host)
        {
            var lifetime = host.Services.GetRequiredService<IHostApplicationLifetime>();
            lifetime.ApplicationStarted.Register(() =>
            {
                var options = host.Services.GetRequiredService<IOptions<ConveyorOptions>>().Value;
                var status = host.Services.GetRequiredService<WorkerStatus>();
                output.WriteLine($"Conveyor worker {status.WorkerId} on queues {string.Join(",", options.Worker.ParseQueues().Select(q => q.Name))}, " +
                    $"concurrency {options.Worker.Concurrency}; database {DatabaseDescription.Of(host.Services)}. Ctrl+C to stop.");
            });
            await host.RunAsync().ConfigureAwait(false);
        }
        return ExitCodes.Success;
    }
}
