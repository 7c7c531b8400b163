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
        flags.Add(command, new Option<string>("--api-key-file")
        {
            Description = "A file of API keys that /api calls send as 'Authorization: Bearer <key>', one a line, each optionally followed by " +
                "'scopes=read,enqueue' and 'queues=a,b' [env CONVEYOR_API_KEY_FILE]. Keys may also come from CONVEYOR_API_KEYS (comma-separated, " +
                "admin) or 'conveyor keys create' (stored in the database); never from a flag, which 'ps' would show. Default none: /api is open, " +
                "allowed on loopback only.",
            HelpName = "path",
        }, "Conveyor:ApiKeyFile");
        flags.Add(command, new Option<string>("--allowed-hosts")
        {
            Description = "Host names the server answers to, comma-separated: name, *.domain, IP or * [env ALLOWED_HOSTS]. localhost, 127.0.0.1 and " +
                "[::1] always are. Default: only those without API keys (against DNS rebinding), any with configured keys.",
            HelpName = "list",
        }, "Conveyor:AllowedHosts");
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
