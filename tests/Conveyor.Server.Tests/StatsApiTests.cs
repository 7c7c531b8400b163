using System.Net.Http.Json;
using System.Text.Json;

namespace Conveyor.Server.Tests;

/// <summary><c>GET /api/v1/stats</c>: the task activity the dashboard charts, counted from task events.</summary>
public sealed class StatsApiTests
{
    [Fact]
    public async Task Stats_count_enqueues_successes_failures_and_queue_waits_per_bucket_and_queue()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?> { ["Conveyor:Http:AllowedHosts:0"] = "127.0.0.1" });
        var ids = new List<Guid>();
        for (var i = 0; i < 5; i++)
        {
            ids.Add(await server.EnqueueAsync(new { task = "conveyor.noop" }));
        }
        var failed = await server.EnqueueAsync(new { task = "http.request", maxAttempts = 1, args = new { url = "http://127.0.0.1:1/stats" } });
        foreach (var id in ids)
        {
            await server.WaitForStateAsync(id, "succeeded");
        }
        await server.WaitForStateAsync(failed, "dead");

        // Events are counted as they are raised; the last ones may be a moment behind the stored state.
        JsonElement stats = default;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        long Sum(string field) => stats.GetProperty("buckets").EnumerateArray().Sum(b => b.GetProperty(field).GetInt64());
        do
        {
            stats = await server.Client.GetFromJsonAsync<JsonElement>("/api/v1/stats");
        }
        while ((Sum("succeeded") < 5 || Sum("dead") < 1) && DateTime.UtcNow < deadline && await Task.Delay(50).ContinueWith(_ => true));

        Assert.Equal(5, stats.GetProperty("bucketSeconds").GetInt32());
        Assert.Equal(900, stats.GetProperty("windowSeconds").GetInt32());
        Assert.True(stats.GetProperty("recording").GetBoolean());
        var buckets = stats.GetProperty("buckets").EnumerateArray().ToList();
        Assert.Equal(180, buckets.Count);
        Assert.Equal(buckets.Select(b => b.GetProperty("at").GetDateTimeOffset()).Order().ToList(), buckets.Select(b => b.GetProperty("at").GetDateTimeOffset()).ToList());
        Assert.True(buckets[^1].GetProperty("at").GetDateTimeOffset() <= DateTimeOffset.UtcNow);
        Assert.Equal(6, Sum("enqueued"));
        Assert.Equal(6, Sum("started"));
        Assert.Equal(5, Sum("succeeded"));
        Assert.Equal(1, Sum("failed"));
        Assert.Equal(1, Sum("dead"));
        Assert.Equal(6, Sum("waitCount"));
        var withWaits = buckets.Where(b => b.GetProperty("waitCount").GetInt64() > 0).ToList();
        Assert.All(withWaits, b => Assert.True(b.GetProperty("waitMsAvg").GetDouble() >= 0 && b.GetProperty("waitMsMax").GetDouble() >= b.GetProperty("waitMsAvg").GetDouble()));
        Assert.All(buckets.Where(b => b.GetProperty("waitCount").GetInt64() == 0), b => Assert.Equal(JsonValueKind.Null, b.GetProperty("waitMsAvg").ValueKind));

        var queue = stats.GetProperty("queues").EnumerateArray().Single(q => q.GetProperty("queue").GetString() == "default");
        Assert.Equal(5, queue.GetProperty("succeeded").GetInt64());
        Assert.Equal(1, queue.GetProperty("failed").GetInt64());
        Assert.True(queue.GetProperty("waitMsAvg").GetDouble() >= 0);
    }

    [Fact]
    public async Task Stats_can_be_switched_off()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?> { ["Conveyor:RecordTaskStats"] = "false" });
        var id = await server.EnqueueAsync(new { task = "conveyor.noop" });
        await server.WaitForStateAsync(id, "succeeded");

        var stats = await server.Client.GetFromJsonAsync<JsonElement>("/api/v1/stats");
        Assert.False(stats.GetProperty("recording").GetBoolean());
        Assert.All(stats.GetProperty("buckets").EnumerateArray(), b => Assert.Equal(0, b.GetProperty("enqueued").GetInt64()));
    }
}
