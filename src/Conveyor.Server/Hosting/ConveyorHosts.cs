using Conveyor.AspNetCore;
using Conveyor.AspNetCore.Security;
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
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [], ContentRootPath = Directory.GetCurrentDirectory() });
        var (server, api) = AddConveyor(builder.Configuration, builder.Services, builder.Logging, HostRole.Server, flags, environment);
        if (builder.Configuration.GetSection("Kestrel:Endpoints").Exists())
        {
            // Kestrel would listen where those say, past the loopback check below.
            throw new ConveyorConfigurationException("Kestrel:Endpoints is not supported by conveyor server; set the address with HOST and PORT (or --host and --port).");
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
        if (api.RateLimit.PermitsPerSecond < 0 || api.RateLimit.Burst < 1)
        {
            throw new ConveyorConfigurationException(
                $"Conveyor:RateLimit (CONVEYOR_RATE_LIMIT__PERMITS_PER_SECOND {api.RateLimit.PermitsPerSecond}, __BURST {api.RateLimit.Burst}): permits per second must be 0 (no limit) or more, the burst at least 1 (defaults 20000 and 20000).");
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

    /// <summary>A worker (and the scheduler) without HTTP, or a tool host whose services are used without starting it.</summary>
    public static IHost BuildHost(HostRole role, IReadOnlyDictionary<string, string?> flags, IReadOnlyDictionary<string, string?>? environment = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [], ContentRootPath = Directory.GetCurrentDirectory() });
        AddConveyor(builder.Configuration, builder.Services, builder.Logging, role, flags, environment);
        return builder.Build();
    }

    /// <summary>What a supervisor (<c>conveyor worker --processes N</c>) needs, without a host: configuration, logging, the
    /// options and the backend, which is built only once a child exits and its leases are handed back. It runs no worker,
    /// scheduler or hosted service, so it stays small beside its children.</summary>
    public static ServiceProvider BuildSupervisorServices(IReadOnlyDictionary<string, string?> flags, IReadOnlyDictionary<string, string?>? environment = null)
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
        return services.BuildServiceProvider();
    }

    private static (ServerOptions Server, ConveyorApiOptions Api) AddConveyor(ConfigurationManager configuration, IServiceCollection services, ILoggingBuilder logging,
        HostRole role, IReadOnlyDictionary<string, string?> flags, IReadOnlyDictionary<string, string?>? environment)
    {
        ConveyorConfiguration.AddSources(configuration, flags, environment);
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
        var api = Read<ConveyorApiOptions>(section);
        var http = Read<HttpTaskOptions>(section.GetSection("Http"));
        if (HttpDestinationGuard.CheckNetworks(http.AllowedNetworks) is { } networks)
        {
            throw new ConveyorConfigurationException(networks);
        }
        if (server.Port is < 0 or > 65535)
        {
            throw new ConveyorConfigurationException($"PORT {server.Port} is out of range: 1 to 65535, or 0 for any free port.");
        }
        var backend = BackendSelection.Select(server);

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
        if (Read<EncryptionOptions>(section.GetSection(EncryptionOptions.SectionName)).ReadKeys() is { } encryptionKeys)
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
