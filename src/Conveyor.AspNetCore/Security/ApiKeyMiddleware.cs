using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.AspNetCore.Security;

/// <summary>The API's key rule for endpoints outside <c>/api</c> that are not route handlers (<c>/metrics</c>): endpoint
/// filters do not run there, so the same check runs as middleware on their branch.</summary>
public static class ApiKeyApplicationBuilderExtensions
{
    /// <summary>Answers 401, as the API does, to requests without a valid <c>Authorization: Bearer &lt;key&gt;</c> when
    /// API keys are configured (<see cref="ConveyorApiOptions.ApiKeys"/>); without keys, lets every request through.
    /// Needs <c>AddConveyorApi</c>.</summary>
    public static IApplicationBuilder UseConveyorApiKeys(this IApplicationBuilder app)
    {
        ArgumentNullException.ThrowIfNull(app);
        var validator = app.ApplicationServices.GetService<ApiKeyValidator>()
            ?? throw new InvalidOperationException("Call services.AddConveyorApi() before app.UseConveyorApiKeys().");
        // The same rule as /api: a key, or the dashboard's session (whose page may read the metrics).
        var filter = new ApiKeyEndpointFilter(validator, app.ApplicationServices.GetRequiredService<DashboardSessions>());
        return app.Use(async (http, next) =>
        {
            var context = new DefaultEndpointFilterInvocationContext(http);
            var refused = await filter.InvokeAsync(context, _ => ValueTask.FromResult<object?>(null)).ConfigureAwait(false);
            if (refused is IResult result)
            {
                await result.ExecuteAsync(http).ConfigureAwait(false);
                return;
            }
            await next(http).ConfigureAwait(false);
        });
    }
}
