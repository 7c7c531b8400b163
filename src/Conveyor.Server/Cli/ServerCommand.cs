using System.CommandLine;
using Conveyor.Server.Configuration;
using Conveyor.Server.Hosting;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;

namespace Conveyor.Server.Cli;

/// <summary><c>conveyor server</c>: the HTTP API with, by default, a worker and the scheduler in the same process.</summary>
internal static class ServerCommand
{
    public static ConfigurationFlags AddOptions(Command command)
    {
        var flags = new ConfigurationFlags();
        flags.Add(command, new Option<string>("--host")
        {
            Description = "Address to listen on [env HOST]. Default 127.0.0.1. Any non-loopback address needs API keys.",
            HelpName = "address",
        }, "Conveyor:Host");
        flags.Add(command, new Option<int?>("--port")
        {
            Description = "Port to listen on [env PORT]; 0 for any free port. Default 8000.",
            HelpName = "port",
        }, "Conveyor:Port");
        flags.Add(command, new Option<string[]>("--api-key")
        {
            Description = "An API key that /api calls must send as 'Authorization: Bearer <key>'; repeat for several " +
                "[env CONVEYOR_API_KEYS, comma-separated]. Default none: /api is open, allowed on loopback only.",
            HelpName = "key",
        }, "Conveyor:ApiKeys");
        flags.Add(command, new Option<bool>("--no-worker")
        {
            Description = "Run no worker in this process (run 'conveyor worker' elsewhere) [env CONVEYOR_RUN_WORKER=false].",
        }, "Conveyor:RunWorker", noWorker => noWorker ? "false" : "true");
        ConveyorCommandLine.AddWorkerOptions(command, flags);
        return flags;
    }

    public static async Task<int> RunAsync(Dictionary<string, string?> flags, TextWriter output, TextWriter error)
    {
        WebApplication app;
        try
        {
            app = ConveyorHosts.BuildServer(flags);
        }
        catch (ConveyorConfigurationException ex)
        {
            return ConveyorCommandLine.Invalid(error, ex);
        }
        await using (app.ConfigureAwait(false))
        {
            try
            {
                await app.StartAsync().ConfigureAwait(false);
            }
            catch (IOException ex)
            {
                // Kestrel binds after the worker has started (it may hold leases already): stop it properly,
                // which hands its tasks back, before the host is disposed. The message names the address.
                error.WriteLine($"conveyor: {ex.Message}");
                await app.StopAsync().ConfigureAwait(false);
                return ExitCodes.Failure;
            }
            if (string.Equals(app.Configuration[ConsoleLogging.FormatterNameKey], ConsoleFormatterNames.Json, StringComparison.OrdinalIgnoreCase))
            {
                // JSON logs are one object a line on standard output: the banner is one of them.
                LogServing(app.Logger, Describe(app), null);
            }
            else
            {
                output.WriteLine(Describe(app));
            }
            // Returns once Ctrl+C or SIGTERM has stopped the host, after the worker drained.
            await app.WaitForShutdownAsync().ConfigureAwait(false);
        }
        return ExitCodes.Success;
    }

    private static readonly Action<ILogger, string, Exception?> LogServing =
        LoggerMessage.Define<string>(LogLevel.Information, new EventId(2, "Serving"), "{Banner}");

    private static string Describe(WebApplication app)
    {
        var options = app.Services.GetRequiredService<IOptions<ConveyorOptions>>().Value;
        var database = DatabaseDescription.Of(app.Services);
        var worker = options.RunWorker
            ? $"on (queues {string.Join(",", options.Worker.ParseQueues().Select(q => q.Name))}, concurrency {options.Worker.Concurrency})"
            : "off";
        return $"Conveyor serving {string.Join(" ", app.Urls)}{Environment.NewLine}" +
            $"  dashboard /, API /api/v1, health /health/ready, {(app.Configuration.GetValue("Conveyor:Metrics", true) ? "metrics /metrics, " : "")}OpenAPI /openapi/v1.json; database {database}; " +
            $"worker {worker}; scheduler {(options.RunScheduler ? "on" : "off")}. Ctrl+C to stop.";
    }
}
