using System.CommandLine;
using Conveyor.Server.Configuration;
using Conveyor.Server.Hosting;
using Conveyor.Server.Supervisor;
using Microsoft.Extensions.Options;

namespace Conveyor.Server.Cli;

/// <summary><c>conveyor worker</c>: a worker (and a scheduler candidate) without HTTP; with <c>--processes N</c>, a
/// supervisor of N such worker processes, which checks its settings here and then supervises as a
/// <see cref="LeanSupervisor"/>. Started by that supervisor with <see cref="HandBackProcess.VariableName"/> set, the same
/// command is its hand-back process instead (<see cref="HandBackCommand"/>).</summary>
internal static class WorkerCommand
{
    public static Command Create(ConfigurationFlags global, TextWriter output, TextWriter error)
    {
        var command = new Command("worker", "Run a worker without the HTTP API: it takes tasks from the database and runs the built-in handlers. " +
            "It also takes part in electing the one scheduler. With --processes, a supervisor runs and restarts that many worker processes.");
        var flags = new ConfigurationFlags();
        ConveyorCommandLine.AddWorkerOptions(command, flags);
        ConveyorCommandLine.AddWorkerProcessOptions(command, flags);
        command.SetAction((parse, _) => RunAsync(ConveyorCommandLine.Flags(parse, global, flags), output, error));
        return command;
    }

    private static async Task<int> RunAsync(Dictionary<string, string?> flags, TextWriter output, TextWriter error)
    {
        ServiceProvider? supervisorServices = null;
        IHost? host = null;
        try
        {
            var handBack = HandBackProcess.RequestedWorkerId;
            supervisorServices = ConveyorHosts.BuildSupervisorServices(flags, logToStandardError: handBack is not null);
            // Reading the options runs their validation: a bad value stops here with its message, before any process starts.
            var options = supervisorServices.GetRequiredService<IOptions<ConveyorOptions>>().Value;
            if (handBack is not null)
            {
                return await HandBackCommand.RunAsync(supervisorServices, handBack, output).ConfigureAwait(false);
            }
            if (ConveyorSupervisor.IsRequested(options))
            {
                output.WriteLine($"Conveyor supervisor {Environment.ProcessId}: {options.Worker.Processes} worker processes on queues " +
                    $"{string.Join(",", options.Worker.ParseQueues().Select(q => q.Name))}, concurrency {options.Worker.Concurrency} each. Ctrl+C to stop.");
                if (LeanSupervisor.IsSupported)
                {
                    var loggers = supervisorServices.GetRequiredService<ILoggerFactory>();
                    var handoff = new SupervisorHandoff(options.Worker.Processes, ConveyorSupervisor.GracefulTimeoutFor(options),
                        SupervisorLogFormat.Of(supervisorServices, loggers.CreateLogger<WorkerSupervisor>()), ConveyorSupervisor.SpareFor(options));
                    // Returns only if the process could not be replaced; it then supervises as below.
                    LeanSupervisor.ReplaceThisProcess(handoff, output, error);
                }
                return await ConveyorSupervisor.RunAsync(supervisorServices).ConfigureAwait(false);
            }
            await supervisorServices.DisposeAsync().ConfigureAwait(false);
            supervisorServices = null;
            host = ConveyorHosts.BuildHost(HostRole.Worker, flags);
        }
        catch (ConveyorConfigurationException ex)
        {
            return ConveyorCommandLine.Invalid(error, ex);
        }
        catch (OptionsValidationException ex)
        {
            foreach (var failure in ex.Failures)
            {
                error.WriteLine($"conveyor: {failure}");
            }
            return ExitCodes.InvalidInput;
        }
        finally
        {
            if (supervisorServices is not null)
            {
                await supervisorServices.DisposeAsync().ConfigureAwait(false);
            }
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
        // A worker that recycled itself or hit a hard time limit set its own code (WorkerExitCodes); else 0.
        return Environment.ExitCode;
    }
}
