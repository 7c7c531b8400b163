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
            Description = "Address to listen on [env HOST]. Default 127.0.0.1. Any non-loopback address needs API keys, and --tls-cert or --behind-proxy.",
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
        flags.Add(command, new Option<string>("--session-secret-file")
        {
            Description = "A file whose first line is the secret (32+ characters) dashboard sessions are signed with, the same on every replica " +
                "[env CONVEYOR_SESSION_SECRET_FILE, or the secret itself in CONVEYOR_SESSION_SECRET]. Default none: a random secret per process, " +
                "so sessions end when the server restarts.",
            HelpName = "path",
        }, "Conveyor:SessionSecretFile");
        flags.Add(command, new Option<string>("--allowed-hosts")
        {
            Description = "Host names the server answers to, comma-separated: name, *.domain, IP or * [env ALLOWED_HOSTS]. localhost, 127.0.0.1 and " +
                "[::1] always are. Default: only those without API keys (against DNS rebinding), any with configured keys.",
            HelpName = "list",
        }, "Conveyor:AllowedHosts");
        flags.Add(command, new Option<string>("--tls-cert")
        {
            Description = "Serve HTTPS with this certificate: a PEM file (with --tls-key) or a PKCS#12 (.pfx) file " +
                "[env CONVEYOR_TLS__CERTIFICATE_FILE]. A password (PFX or encrypted key) comes from CONVEYOR_TLS__PASSWORD or --tls-password-file. " +
                "Default none: plain HTTP, allowed on loopback or with --behind-proxy only.",
            HelpName = "path",
        }, "Conveyor:Tls:CertificateFile");
        flags.Add(command, new Option<string>("--tls-key")
        {
            Description = "The PEM private key of --tls-cert [env CONVEYOR_TLS__KEY_FILE]. Default: read from the certificate file.",
            HelpName = "path",
        }, "Conveyor:Tls:KeyFile");
        flags.Add(command, new Option<string>("--tls-password-file")
        {
            Description = "A file whose first line is the password of a PFX or an encrypted PEM key [env CONVEYOR_TLS__PASSWORD_FILE]; " +
                "never the password itself in a flag, which 'ps' would show.",
            HelpName = "path",
        }, "Conveyor:Tls:PasswordFile");
        flags.Add(command, new Option<bool>("--behind-proxy")
        {
            Description = "The server sits behind a reverse proxy that terminates TLS [env CONVEYOR_BEHIND_PROXY=true]: it may listen off " +
                "loopback without a certificate, and takes the client's address, scheme and host from X-Forwarded-For, -Proto and -Host " +
                "sent by --known-proxies only. Needs API keys.",
        }, "Conveyor:BehindProxy");
        flags.Add(command, new Option<string>("--known-proxies")
        {
            Description = "Addresses or networks of the proxies whose forwarded headers are believed with --behind-proxy, comma-separated: " +
                "10.0.0.5, 10.0.0.0/8, fd00::/8 [env CONVEYOR_KNOWN_PROXIES]. Default loopback (127.0.0.0/8, ::1).",
            HelpName = "list",
        }, "Conveyor:KnownProxies");
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

    private static string Proxy(IConfiguration configuration)
    {
        var server = configuration.GetSection(ConveyorConfiguration.Section).Get<ServerOptions>() ?? new ServerOptions();
        if (!server.BehindProxy)
        {
            return "";
        }
        IEnumerable<string> proxies = server.KnownProxies.Count > 0 ? server.KnownProxies : ReverseProxy.DefaultKnownProxies;
        return $"; behind a proxy, forwarded headers from {string.Join(", ", proxies)}";
    }

    private static string Describe(WebApplication app)
    {
        var options = app.Services.GetRequiredService<IOptions<ConveyorOptions>>().Value;
        var database = DatabaseDescription.Of(app.Services);
        var worker = options.RunWorker
            ? $"on (queues {string.Join(",", options.Worker.ParseQueues().Select(q => q.Name))}, concurrency {options.Worker.Concurrency})"
            : "off";
        return $"Conveyor serving {string.Join(" ", app.Urls)}{Environment.NewLine}" +
            $"  dashboard /, API /api/v1, health /health/ready, {(app.Configuration.GetValue("Conveyor:Metrics", true) ? "metrics /metrics, " : "")}OpenAPI /openapi/v1.json; database {database}; " +
            $"worker {worker}; scheduler {(options.RunScheduler ? "on" : "off")}{Proxy(app.Configuration)}. Ctrl+C to stop.";
    }
}
