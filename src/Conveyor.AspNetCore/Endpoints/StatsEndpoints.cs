using Conveyor.AspNetCore.Stats;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;

namespace Conveyor.AspNetCore.Endpoints;

/// <summary><c>/api/v1/stats</c>: task activity over time, for the dashboard's charts.</summary>
internal static class StatsEndpoints
{
    public static void Map(ApiGroups api)
    {
        api.Read.MapGet("/stats", ([FromServices] TaskStatsRecorder recorder) => TypedResults.Ok(recorder.Snapshot()))
            .WithName("GetStats")
            .WithSummary("Tasks enqueued, started, succeeded, failed and dead, and queue wait, in 5 s buckets over the last 15 minutes")
            .WithDescription("Counted by this server from the task events of every process since it started; per queue, totals over the window.")
            .Produces<StatsSnapshot>(StatusCodes.Status200OK);
    }
}
