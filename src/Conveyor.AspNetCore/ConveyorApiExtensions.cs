using Conveyor.AspNetCore.Audit;
using Conveyor.AspNetCore.Endpoints;
using Conveyor.AspNetCore.Health;
using Conveyor.AspNetCore.Outages;
using Conveyor.AspNetCore.Requests;
using Conveyor.AspNetCore.Security;
using Conveyor.AspNetCore.Stats;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Authorization.Policy;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Cors.Infrastructure;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor.AspNetCore;

/// <summary>Registration and mapping of Conveyor's HTTP API.</summary>
public static class ConveyorApiExtensions
{
    private const string HealthCheckServiceCategory = "Microsoft.Extensions.Diagnostics.HealthChecks.DefaultHealthCheckService";

    /// <summary>Adds what <see cref="MapConveyorApi"/> needs: problem details, health checks (backend and worker,
    /// tagged for readiness) and the OpenAPI document. Call <c>AddConveyor</c> too. Idempotent.</summary>
    public static IServiceCollection AddConveyorApi(this IServiceCollection services, Action<ConveyorApiOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var options = services.AddOptions<ConveyorApiOptions>()
            .Validate(o => o.EventStreamHeartbeat >= TimeSpan.FromMilliseconds(100), "Conveyor:EventStreamHeartbeat must be at least 00:00:00.1 (default 00:00:15).")
            .Validate(o => o.EventStreamBuffer >= 1, "Conveyor:EventStreamBuffer must be at least 1 (events per client; default 1000).")
            .Validate(o => o.SessionLifetime >= TimeSpan.FromMinutes(1), "Conveyor:SessionLifetime must be at least 00:01:00 (default 12:00:00).")
            .Validate(o => o.ApiKeyRefreshInterval >= TimeSpan.FromSeconds(1), "Conveyor:ApiKeyRefreshInterval must be at least 00:00:01 (default 00:00:30).")
            .Validate(o => o.FailedAuthLimit >= 1, "Conveyor:FailedAuthLimit must be at least 1 (wrong keys per address per window; default 10).")
            .Validate(o => o.FailedAuthWindow >= TimeSpan.FromSeconds(1), "Conveyor:FailedAuthWindow must be at least 00:00:01 (default 00:01:00).")
            .Validate(o => o.RateLimit.PermitsPerSecond >= 0, "Conveyor:RateLimit:PermitsPerSecond must be 0 (no limit) or more (default 20000).")
            .Validate(o => o.RateLimit.Burst >= 1, "Conveyor:RateLimit:Burst must be at least 1 (default 20000).")
            .Validate(o => o.Users.MaxFailures >= 1, "Conveyor:Users:MaxFailures must be at least 1 (failed sign-ins before a lockout; default 5).")
            .Validate(o => o.Users.LockoutDuration >= TimeSpan.FromSeconds(1), "Conveyor:Users:LockoutDuration must be at least 00:00:01 (default 00:15:00).")
            .Validate(o => o.Users.MinPasswordLength >= 8, "Conveyor:Users:MinPasswordLength must be at least 8 (default 12).")
            .ValidateOnStart();
        if (configure is not null)
        {
            options.Configure(configure);
        }
        if (services.Any(d => d.ServiceType == typeof(ApiKeyRegistry)))
        {
            return services;
        }
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<IValidateOptions<ConveyorApiOptions>, ConfiguredKeysValidator>();
        services.AddSingleton<ApiKeyRegistry>();
        services.AddHostedService<ApiKeyRefresher>();
        services.AddSingleton<FailedAuthLimiter>();
        services.AddSingleton(provider => SessionSecret.From(provider.GetRequiredService<IOptions<ConveyorApiOptions>>().Value));
        services.AddSingleton<DashboardSessions>();
        services.AddSingleton<DashboardUsers>();
        services.AddSingleton<AuditRecorder>();
        services.AddAuthentication().AddScheme<AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(ApiScopes.Scheme, null);
        services.AddAuthorization(authorization =>
        {
            foreach (var scope in ApiScopes.All)
            {
                authorization.AddPolicy(ApiScopes.Policy(scope), policy => policy
                    .AddAuthenticationSchemes(ApiScopes.Scheme)
                    .RequireAuthenticatedUser()
                    .AddRequirements(new ScopeRequirement(scope)));
            }
        });
        services.AddSingleton<IAuthorizationHandler, ScopeAuthorizationHandler>();
        services.AddRateLimiter(_ => { });
        services.AddOptions<RateLimiterOptions>().Configure<IOptions<ConveyorApiOptions>>((limiter, api) => ApiTrafficPolicies.Configure(limiter, api.Value));
        services.AddCors();
        services.AddOptions<CorsOptions>().Configure<IOptions<ConveyorApiOptions>>((cors, api) => ApiTrafficPolicies.Configure(cors, api.Value));
        services.AddSingleton<IAuthorizationMiddlewareResultHandler, ApiAuthorizationResultHandler>();
        services.AddSingleton<TaskStatsRecorder>();
        services.AddSingleton<SharedQueueCounts>();
        services.AddHostedService(sp => sp.GetRequiredService<TaskStatsRecorder>());
        services.AddSingleton<EnqueueRequestReader>();
        services.AddSingleton<ScheduleRequestReader>();
        services.AddSingleton<WorkflowRequestReader>();
        services.AddSingleton<DeclaredTasks>();
        services.AddSingleton<BackendOutageLog>();
        services.AddSingleton<ReadinessLog>();
        services.AddProblemDetails();
        // The framework logs every unhealthy check at each probe (an error per probe for as long as an outage lasts);
        // ReadinessLog logs readiness on its transitions instead. This silences the framework's per-check lines (below
        // Critical) for every check in the app; an app that wants them adds its own filter for this category later.
        services.AddLogging(logging => logging.AddFilter(HealthCheckServiceCategory, LogLevel.Critical));
        services.AddHealthChecks()
            .AddCheck<BackendHealthCheck>("backend", tags: [HealthReportWriter.ReadyTag])
            .AddCheck<WorkerHealthCheck>("worker", tags: [HealthReportWriter.ReadyTag]);
        services.AddOpenApi(o => o.AddDocumentTransformer((document, _, _) =>
        {
            document.Info.Title = "Conveyor HTTP API";
            document.Info.Description = "Enqueue and manage tasks. Errors are RFC 9457 problem details naming the field at fault.";
            return Task.CompletedTask;
        }));
        return services;
    }

    /// <summary>Puts an endpoint outside <c>/api</c> (<c>/metrics</c>) behind the API's key rule for <paramref name="scope"/>:
    /// a key or dashboard session with that scope when keys are configured. Needs <c>AddConveyorApi</c>, and
    /// <c>UseAuthentication</c>/<c>UseAuthorization</c> (added by WebApplication).</summary>
    public static TBuilder RequireConveyorScope<TBuilder>(this TBuilder builder, string scope) where TBuilder : IEndpointConventionBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        if (!ApiScopes.IsScope(scope))
        {
            throw new ArgumentException($"'{scope}' is not a scope; use {string.Join(", ", ApiScopes.All)}.", nameof(scope));
        }
        return builder.RequireAuthorization(ApiScopes.Policy(scope));
    }

    /// <summary>Answers an error status that has no body yet (404 for no route, 405 for a method a route does not take)
    /// with problem details, <c>application/problem+json</c> whatever the request's Accept header asks for, as every
    /// other error of the API is. Use in place of <c>UseStatusCodePages()</c>, whose default writes <c>text/plain</c>
    /// to a client that does not accept JSON.</summary>
    public static IApplicationBuilder UseConveyorStatusCodePages(this IApplicationBuilder app)
    {
        ArgumentNullException.ThrowIfNull(app);
        return app.UseStatusCodePages(context => ApiProblems.WriteStatusAsync(context.HttpContext));
    }

    /// <summary>
    /// Maps the API v1 under <c>/api/v1</c> (tasks, queues, workers, schedules, limits, events, stats, and the dashboard's session), <c>/health/live</c> and <c>/health/ready</c>,
    /// and <c>/openapi/v1.json</c>. When API keys are configured, every <c>/api</c> call needs one; health and
    /// OpenAPI stay open. Returns the <c>/api/v1</c> group, to which more conventions can be added.
    /// </summary>
    public static RouteGroupBuilder MapConveyorApi(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        if (endpoints.ServiceProvider.GetService<ApiKeyRegistry>() is null)
        {
            throw new InvalidOperationException("Call services.AddConveyorApi() before app.MapConveyorApi().");
        }
        if (endpoints.ServiceProvider.GetService<TaskRegistry>() is null)
        {
            throw new InvalidOperationException("Call services.AddConveyor() before app.MapConveyorApi().");
        }
        var options = endpoints.ServiceProvider.GetRequiredService<IOptions<ConveyorApiOptions>>().Value;
        var api = endpoints.MapGroup("/api/v1")
            .AddEndpointFilter<CrossSiteEndpointFilter>()
            .AddEndpointFilter<QueueAccessEndpointFilter>()
            .AddEndpointFilter<BackendOutageEndpointFilter>()
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .WithTags("Conveyor")
            .ProducesProblem(StatusCodes.Status401Unauthorized)
            .ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status429TooManyRequests);
        // One group per scope, each behind its policy (ApiScopes).
        var groups = new ApiGroups(
            api.MapGroup("").RequireAuthorization(ApiScopes.Policy(ApiScopes.Read)),
            api.MapGroup("").RequireAuthorization(ApiScopes.Policy(ApiScopes.Enqueue)),
            // Admin calls are recorded in the audit log (the policy's refusals by ApiAuthorizationResultHandler).
            api.MapGroup("").RequireAuthorization(ApiScopes.Policy(ApiScopes.Admin)).AddEndpointFilter<AuditEndpointFilter>());
        TaskEndpoints.Map(groups);
        QueueEndpoints.Map(groups);
        LimitEndpoints.Map(groups);
        EventEndpoints.Map(groups);
        ScheduleEndpoints.Map(groups);
        WorkflowEndpoints.Map(groups);
        StatsEndpoints.Map(groups);
        KeyEndpoints.Map(groups);
        AuditEndpoints.Map(groups);
        // Outside the policies: this is where the dashboard first presents a key.
        SessionEndpoints.Map(endpoints.MapGroup("/api/v1").WithTags("Conveyor"));
        UserSessionEndpoints.Map(endpoints.MapGroup("/api/v1").WithTags("Conveyor"));
        if (options.MapHealthChecks)
        {
            endpoints.MapHealthChecks("/health/live", new HealthCheckOptions
            {
                // Live means the process answers; dependencies belong to readiness, so a backend outage does not restart it.
                Predicate = _ => false,
                ResponseWriter = HealthReportWriter.WriteAsync,
            });
            endpoints.MapHealthChecks("/health/ready", new HealthCheckOptions
            {
                Predicate = check => check.Tags.Contains(HealthReportWriter.ReadyTag),
                ResponseWriter = HealthReportWriter.WriteReadyAsync,
            });
        }
        if (options.MapOpenApi)
        {
            endpoints.MapOpenApi();
        }
        return api;
    }
}

/// <summary>Checks the configured keys at start (length, key file, scopes), naming the setting and never the key.</summary>
internal sealed class ConfiguredKeysValidator : IValidateOptions<ConveyorApiOptions>
{
    public ValidateOptionsResult Validate(string? name, ConveyorApiOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        try
        {
            ConfiguredApiKeys.Read(options);
            SessionSecret.From(options);
            return ApiTrafficPolicies.OriginsProblem(options) is { } origins ? ValidateOptionsResult.Fail(origins) : ValidateOptionsResult.Success;
        }
        catch (InvalidOperationException ex)
        {
            return ValidateOptionsResult.Fail(ex.Message);
        }
    }
}
