using Conveyor.AspNetCore.Contracts;
using Conveyor.Backends;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;

namespace Conveyor.AspNetCore.Endpoints;

/// <summary><c>/api/v1/limits</c>.</summary>
internal static class LimitEndpoints
{
    public static void Map(ApiGroups api)
    {
        api.Read.MapGet("/limits", ListLimitsAsync)
            .WithName("ListLimits")
            .WithSummary("The rate and concurrency limits this process is configured with, and their use now across every worker");
    }

    private static async Task<Ok<List<LimitResource>>> ListLimitsAsync(
        [FromServices] IConveyorBackend backend, [FromServices] IOptions<ConveyorOptions> options, [FromServices] TaskRegistry registry,
        [FromServices] TimeProvider time, CancellationToken cancellationToken)
    {
        var limits = LimitDescription.Describe(options.Value, registry);
        if (limits.Count == 0)
        {
            return TypedResults.Ok(new List<LimitResource>());
        }
        var usage = await backend.Limits.GetUsageAsync(cancellationToken).ConfigureAwait(false);
        var now = time.GetUtcNow();
        return TypedResults.Ok(limits.Select(l => LimitResource.From(l, usage, now)).ToList());
    }
}
