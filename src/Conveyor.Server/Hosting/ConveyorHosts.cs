using Conveyor.AspNetCore;
using Conveyor.AspNetCore.Security;
using Conveyor.Backends;
using Conveyor.Dashboard;
using Conveyor.RabbitMQ;
using Conveyor.Redis;
using Conveyor.Server.Configuration;
using Conveyor.Server.Tasks;
using Microsoft.AspNetCore.HostFiltering;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;

namespace Conveyor.Server.Hosting;

/// <summary>What a command runs in this process.</summary>
internal enum HostRole
{
    /// <summary>HTTP API with a worker and the scheduler (each switchable in configuration).</summary>
    Server,
    /// <summary>A worker and the scheduler, no HTTP.</summary>
    Worker,
    /// <summary>Nothing in the background: a command that calls the backend and exits.</summary>
    Tool,
    /// <summary>The supervisor of worker processes: options, logging and the backend, no tasks and no host.</summary>
    Supervisor,
}

/// <summary>Builds the hosts of the <c>conveyor</c> commands from configuration.</summary>
internal static class ConveyorHosts
{
    /// <summary>Margin between the worker's drain (<see cref="WorkerOptions.ShutdownTimeout"/>, then up to 5 s for
    /// cancelled handlers) and the host's own shutdown limit, so the host never cuts the drain short.</summary>
    internal static readonly TimeSpan ShutdownMargin = TimeSpan.FromSeconds(15);

    /// <summary>The server: API, health, OpenAPI, and by default a worker and the scheduler. Throws
    /// <see cref="ConveyorConfigurationException"/> when a setting cannot work, including a non-loopback address without API keys.</summary>
    public static WebApplication BuildServer(IReadOnlyDictionary<string, string?> flags, IReadOnlyDictionary<string, string?>? environment = null)
    {
        var builder = CreateServerBuilder();
        var (server, api) = AddConveyor(builder.Configuration, builder.Services, builder.Logging, HostRole.Server, flags, environment);
        if (KestrelEndpointsProblem(builder.Configuration) is { } endpoints)
        {
            throw new ConveyorConfigurationException(endpoints);
        }
        IReadOnlyList<ApiCaller> configuredKeys;
        try
        {
            configuredKeys = ConfiguredApiKeys.Read(api);
        }
        catch (InvalidOperationException ex)
        {
            throw new ConveyorConfigurationException(ex.Message, ex);
        }
        if (ApiTrafficPolicies.OriginsProblem(api) is { } origins)
        {
            throw new ConveyorConfigurationException(origins);
        }
        if (RateLimitProblem(api) is { } rateLimit)
        {
            throw new ConveyorConfigurationException(rateLimit);
        }
        ListenAddress.EnsureSafe(server.Host, server.Port, configuredKeys.Count > 0);
        ReverseProxy.EnsureKeys(server.BehindProxy, configuredKeys.Count > 0);
        var certificate = ServerCertificate.Load(server.Tls);
        ReverseProxy.EnsureEncrypted(server.Host, server.Port, certificate is not null, server.BehindProxy);
        var allowedHosts = ListenAddress.AllowedHosts(server.AllowedHosts, configuredKeys.Count > 0);
        ForwardedHeadersOptions? forwarded = null;
        if (server.BehindProxy)
        {
            // Made here, so that an entry of KnownProxies that is not an address stops the start naming it.
            forwarded = new ForwardedHeadersOptions();
            ReverseProxy.Configure(forwarded, server.KnownProxies);
        }
        var hsts = (certificate is not null || server.BehindProxy) && server.Tls.HstsMaxAge > TimeSpan.Zero;
        if (hsts)
        {
            // ASP.NET Core's HSTS: only on HTTPS answers, never to localhost, 127.0.0.1 or [::1] (a browser would then
            // insist on HTTPS for every other local app). No includeSubDomains or preload: other names are not ours to pin.
            builder.Services.AddHsts(o => o.MaxAge = server.Tls.HstsMaxAge);
        }
        if (certificate is not null)
        {
            var (serverCertificate, chain) = certificate.Value;
            builder.WebHost.ConfigureKestrel(kestrel => kestrel.ConfigureHttpsDefaults(https =>
            {
                https.ServerCertificate = serverCertificate;
                https.ServerCertificateChain = chain;
            }));
        }
        builder.Services.AddConveyorApi();
        builder.Services.AddOptions<ConveyorApiOptions>().Bind(builder.Configuration.GetSection(ConveyorConfiguration.Section));
        // The web host's defaults put host filtering first in the pipeline, ahead of the problem-details writer, from the
        // top-level AllowedHosts key. Conveyor places it itself, after UseStatusCodePages, so that a refused Host is
        // answered 400 with problem details, and sets its hosts from Conveyor:AllowedHosts. The forwarded-headers filter
        // the web host adds when ASPNETCORE_FORWARDEDHEADERS_ENABLED is set would believe X-Forwarded-* from anyone:
        // Conveyor places that middleware itself too, with --behind-proxy and the known proxies only.
        var defaultHostFiltering = builder.Services.Where(d => d.ServiceType == typeof(IStartupFilter)
            && d.ImplementationType?.Name is "HostFilteringStartupFilter" or "ForwardedHeadersStartupFilter").ToList();
        foreach (var descriptor in defaultHostFiltering)
        {
            builder.Services.Remove(descriptor);
        }
        builder.Services.Configure<HostFilteringOptions>(o =>
        {
            o.AllowedHosts = [.. allowedHosts];
            o.IncludeFailureMessage = false;
        });
        builder.WebHost.UseUrls(ListenAddress.Url(server.Host, server.Port, certificate is not null));
        var app = builder.Build();
        if (forwarded is not null)
        {
            // First: everything after it — host filtering, HSTS, the failed-key limiter, the rate limiter, the session
            // cookie — sees the client's address, scheme and host instead of the proxy's.
            app.UseForwardedHeaders(forwarded);
        }
        app.UseConveyorSecurityHeaders();
        app.UseExceptionHandler();
        app.UseConveyorStatusCodePages();
        app.UseHostFiltering();
        if (hsts)
        {
            // After the exception handler, which clears headers and runs the rest of the pipeline again for its answer.
            app.UseHsts();
        }
        app.UseRouting();
        app.UseCors();
        app.UseRateLimiter();
        app.UseAuthentication();
        app.UseAuthorization();
        // The API's rate limit and CORS policy (ApiTrafficPolicies) on every endpoint it maps; an app hosting the API
        // itself opts in the same way, with UseCors and UseRateLimiter in its pipeline.
        app.MapGroup("").RequireRateLimiting(ApiTrafficPolicies.Name).RequireCors(ApiTrafficPolicies.Name).MapConveyorApi();
        ConveyorTelemetry.Map(app, server.Metrics);
        app.MapConveyorDashboard("/");
        return app;
    }

    /// <summary>The builder of <see cref="BuildServer"/>, before Conveyor's sources are added: the web host's configuration
    /// sources (appsettings.json and appsettings.{Environment}.json in the working directory, environment variables).
    /// <c>conveyor doctor</c> reads the server's configuration through it, so that both read the same sources.</summary>
    internal static WebApplicationBuilder CreateServerBuilder() =>
        WebApplication.CreateBuilder(new WebApplicationOptions { Args = HostArguments, ContentRootPath = Directory.GetCurrentDirectory() });

    /// <summary>The host builders' own arguments: appsettings.json is read once, at start, not watched. Watching it
    /// watches the whole working directory (inotify), where an embedded SQLite database usually lives: every page its
    /// writer puts in the WAL then woke the host's file-watching thread, 5–10 % of a drain's CPU, and in each
    /// child of a supervisor (docs/benchmarks.md, "The hosts' configuration watcher").</summary>
    internal static readonly string[] HostArguments = ["--hostBuilder:reloadConfigOnChange=false"];

    /// <summary>Why the server refuses <c>Kestrel:Endpoints</c>, when it is set, or null.</summary>
    internal static string? KestrelEndpointsProblem(IConfiguration configuration) =>
        configuration.GetSection("Kestrel:Endpoints").Exists()
            // Kestrel would listen where those say, past the loopback check.
            ? "Kestrel:Endpoints is not supported by conveyor server; set the address with HOST and PORT (or --host and --port)."
            : null;

    /// <summary>What is wrong with the API's rate limit, or null.</summary>
    internal static string? RateLimitProblem(ConveyorApiOptions api) =>
        api.RateLimit.PermitsPerSecond < 0 || api.RateLimit.Burst < 1
            ? $"Conveyor:RateLimit (CONVEYOR_RATE_LIMIT__PERMITS_PER_SECOND {api.RateLimit.PermitsPerSecond}, __BURST {api.RateLimit.Burst}): permits per second must be 0 (no limit) or more, the burst at least 1 (defaults 20000 and 20000)."
            : null;

    /// <summary>A worker (and the scheduler) without HTTP, or a tool host whose services are used without starting it.</summary>
    public static IHost BuildHost(HostRole role, IReadOnlyDictionary<string, string?> flags, IReadOnlyDictionary<string, string?>? environment = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = HostArguments, ContentRootPath = Directory.GetCurrentDirectory() });
        AddConveyor(builder.Configuration, builder.Services, builder.Logging, role, flags, environment);
        return builder.Build();
    }

    /// <summary>What a supervisor (<c>conveyor worker --processes N</c>) needs, without a host: configuration, logging, the
    /// options and the backend, which is built only to hand back the leases of a child that exited without handing them
    /// back itself. It runs no worker, scheduler or hosted service, so it stays small beside its children. A hand-back
    /// process builds the same, with <paramref name="logToStandardError"/>: its standard output is its answer.</summary>
    public static ServiceProvider BuildSupervisorServices(IReadOnlyDictionary<string, string?> flags, IReadOnlyDictionary<string, string?>? environment = null,
        bool logToStandardError = false)
    {
        // The host builder's configuration sources, without its file watchers and its other log providers: the
        // supervisor reads its settings once, and every megabyte it holds it holds beside each child.
        var configuration = new ConfigurationManager();
        configuration.SetBasePath(Directory.GetCurrentDirectory());
        var environmentName = System.Environment.GetEnvironmentVariable("DOTNET_ENVIRONMENT") ?? Environments.Production;
        configuration.AddJsonFile("appsettings.json", optional: true, reloadOnChange: false);
        configuration.AddJsonFile($"appsettings.{environmentName}.json", optional: true, reloadOnChange: false);
        configuration.AddEnvironmentVariables();
        var services = new ServiceCollection();
        services.AddSingleton<IConfiguration>(configuration);
        services.AddLogging(logging =>
        {
            logging.AddConfiguration(configuration.GetSection("Logging"));
            AddConveyor(configuration, services, logging, HostRole.Supervisor, flags, environment);
        });
        if (logToStandardError)
        {
            services.Configure<ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        }
        return services.BuildServiceProvider();
    }

    private static (ServerOptions Server, ConveyorApiOptions Api) AddConveyor(ConfigurationManager configuration, IServiceCollection services, ILoggingBuilder logging,
        HostRole role, IReadOnlyDictionary<string, string?> flags, IReadOnlyDictionary<string, string?>? environment)
    {
        ConveyorConfiguration.AddSources(configuration, flags, environment);
        var section = configuration.GetSection(ConveyorConfiguration.Section);
        var settings = ReadSettings(configuration);
        var server = settings.Server;
        if (role != HostRole.Supervisor)
        {
            // A supervisor's children read the same environment and warn.
            var warnings = ConfigurationKeys.UnknownVariables(environment ?? ConveyorEnvironmentVariablesProvider.ReadProcessEnvironment()).ToList();
            if (role is HostRole.Server or HostRole.Worker && Environment.IsPrivilegedProcess)
            {
                warnings.Add("Conveyor runs as root: a task's code (and http.request) runs with every privilege of the machine. " +
                    "Run it as an unprivileged user, as the systemd unit in docs/operations.md does.");
            }
            services.AddHostedService(sp => new ConfigurationWarnings(warnings, sp.GetRequiredService<ILogger<ConfigurationWarnings>>()));
        }
        var api = settings.Api;
        if (HttpDestinationGuard.CheckNetworks(settings.Http.AllowedNetworks) is { } networks)
        {
            throw new ConveyorConfigurationException(networks);
        }
        var backend = settings.Backend;

        ConsoleLogging.Add(configuration, logging, environment);
        if (role == HostRole.Tool)
        {
            // A tool's standard output is its answer (info --json); logs go to standard error.
            services.Configure<ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        }

        var conveyor = services.AddConveyor();
        if (role != HostRole.Supervisor)
        {
            conveyor.AddNoopTask()
                .AddSleepTask()
                .AddHttpRequestTask(section.GetSection("Http"));
        }
        // Conveyor:Redis (CONVEYOR_REDIS__KEY_PREFIX, …) and Conveyor:RabbitMq (CONVEYOR_RABBITMQ__PREFIX, …) tune the
        // backends; bound before the backend's registration, so that the URLs from DATABASE_URL, REDIS_URL and AMQP_URL win.
        services.AddOptions<RedisBackendOptions>().Bind(section.GetSection("Redis"));
        services.AddOptions<RabbitMqBackendOptions>().Bind(section.GetSection("RabbitMq"));
        backend.Use(conveyor);
        if (settings.Encryption.ReadKeys() is { } encryptionKeys)
        {
            conveyor.UseEncryption(encryptionKeys);
        }
        services.AddOptions<ConveyorOptions>().Bind(section);
        if (role == HostRole.Worker)
        {
            services.PostConfigure<ConveyorOptions>(o => o.RunWorker = true);
        }
        else if (role == HostRole.Tool)
        {
            services.PostConfigure<ConveyorOptions>(o =>
            {
                o.RunWorker = false;
                o.RunScheduler = false;
            });
        }
        services.AddSingleton(backend);
        if (role is HostRole.Server or HostRole.Worker)
        {
            ConveyorTelemetry.Add(services, configuration, role, server.Metrics);
        }
        services.AddOptions<HostOptions>().Configure<IOptions<ConveyorOptions>>((host, conveyor) =>
            host.ShutdownTimeout = conveyor.Value.Worker.ShutdownTimeout + ShutdownMargin);
        return (server, api);
    }

    /// <summary>Binds the options every command reads from <paramref name="configuration"/> (its sources added) and makes
    /// the checks that do not depend on the role: values that convert, the engine's options, the port, the backend's
    /// URLs. Throws <see cref="ConveyorConfigurationException"/> saying what to change. The checks of the API's keys, TLS,
    /// hosts, origins and http.request's networks are the server's (<see cref="BuildServer"/>) and <c>conveyor doctor</c>'s.</summary>
    internal static ConveyorSettings ReadSettings(IConfiguration configuration)
    {
        var section = configuration.GetSection(ConveyorConfiguration.Section);
        var server = Read<ServerOptions>(section);
        // Bound here once so that a value that does not convert stops the command with a message, instead of
        // failing later inside a hosted service.
        var conveyorOptions = Read<ConveyorOptions>(section);
        // The same checks the host makes at start, made here so that the command stops with the message (exit code 2)
        // before anything starts.
        var validation = new ConveyorOptionsValidator().Validate(null, conveyorOptions);
        if (validation.Failed)
        {
            throw new ConveyorConfigurationException(string.Join(" ", validation.Failures));
        }
        var api = Read<ConveyorApiOptions>(section);
        var http = Read<HttpTaskOptions>(section.GetSection("Http"));
        if (server.Port is < 0 or > 65535)
        {
            throw new ConveyorConfigurationException($"PORT {server.Port} is out of range: 1 to 65535, or 0 for any free port.");
        }
        var backend = BackendSelection.Select(server);
        var encryption = Read<EncryptionOptions>(section.GetSection(EncryptionOptions.SectionName));
        return new ConveyorSettings(server, conveyorOptions, api, http, encryption, backend);
    }

    private static T Read<T>(IConfiguration section) where T : new()
    {
        try
        {
            return section.Get<T>() ?? new T();
        }
        catch (InvalidOperationException ex)
        {
            // The binder's message names the key and the value that did not convert (PORT=abc).
            throw new ConveyorConfigurationException($"{ex.Message} {ex.InnerException?.Message}".Trim(), ex);
        }
    }
}

/// <summary>The options every command binds (<see cref="ConveyorHosts.ReadSettings"/>).</summary>
/// <param name="Server">Where the server listens and which backend it uses.</param>
/// <param name="Conveyor">The engine's options.</param>
/// <param name="Api">The HTTP API's options.</param>
/// <param name="Http">The <c>http.request</c> task's options.</param>
/// <param name="Encryption">Payload encryption's keys, not yet read.</param>
/// <param name="Backend">The backend the URLs select.</param>
internal sealed record ConveyorSettings(ServerOptions Server, ConveyorOptions Conveyor, ConveyorApiOptions Api, HttpTaskOptions Http,
    EncryptionOptions Encryption, BackendLocation Backend);

/// <summary>Logs, once at start, the configuration problems that do not stop it (unknown <c>CONVEYOR_*</c> variables).</summary>
internal sealed partial class ConfigurationWarnings(IReadOnlyList<string> warnings, ILogger<ConfigurationWarnings> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        foreach (var warning in warnings)
        {
            LogWarning(warning);
        }
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(1, LogLevel.Warning, "{Warning}")]
    private partial void LogWarning(string warning);
}
