using System.Diagnostics;
using System.Text;
using Microsoft.Playwright;
using Xunit.Abstractions;
using static Microsoft.Playwright.Assertions;

namespace Conveyor.Dashboard.Tests;

/// <summary>The overview left open while a server takes tasks fast: it stays live and its JS heap does not grow with
/// the events it has seen (views re-read what they show; nothing accumulates per event).</summary>
[Collection(BrowserCollection.Name)]
public sealed class DashboardLoadTests(BrowserFixture fixture, ITestOutputHelper output)
{
    [Fact]
    public async Task Overview_under_a_stream_of_enqueues_keeps_its_JS_heap_flat()
    {
        await using var server = await DashboardServer.StartAsync();
        var page = await fixture.NewPageAsync();
        await page.GotoAsync(server.BaseAddress.ToString());
        await Expect(page.Locator("[data-live=live]")).ToBeVisibleAsync();

        // Warm up (first events, first charts), then the heap after a full collection; then the load, and again.
        var warm = await EnqueueForAsync(server, TimeSpan.FromSeconds(4));
        var before = await HeapAsync(page);
        var sent = await EnqueueForAsync(server, TimeSpan.FromSeconds(10));
        await Expect(page.Locator("[data-queue=load-held] [data-state=queued]")).ToHaveTextAsync((warm + sent).ToString("N0", System.Globalization.CultureInfo.InvariantCulture), new() { Timeout = 30_000 });
        var after = await HeapAsync(page);

        var line = $"dashboard: overview JS heap {before / 1048576.0:F1} MiB before, {after / 1048576.0:F1} MiB after {sent} more tasks enqueued in 10 s ({sent / 10.0:F0}/s) with the page live";
        output.WriteLine(line);
        Console.WriteLine(line);
        // A burst faster than the page reads can overflow its event stream (the server ends a stream that falls too far
        // behind); the page then says so and reconnects: live again within its backoff.
        await Expect(page.Locator("[data-live=live]")).ToBeVisibleAsync(new() { Timeout = 30_000 });
        Assert.True(after < before + (2 * 1048576), line);
    }

    // Batches of 250 held tasks (no worker takes them: only enqueue events and growing counts) as fast as the server takes them.
    private static async Task<int> EnqueueForAsync(DashboardServer server, TimeSpan duration)
    {
        var body = new StringBuilder("""{"tasks": [""");
        for (var i = 0; i < 250; i++)
        {
            body.Append(i == 0 ? "" : ",").Append("""{"task": "conveyor.noop", "queue": "load-held"}""");
        }
        var json = body.Append("]}").ToString();
        var sent = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < duration)
        {
            await server.PostAsync("api/v1/tasks/batch", json);
            sent += 250;
        }
        return sent;
    }

    private static async Task<double> HeapAsync(IPage page) =>
        await page.EvaluateAsync<double>("() => { window.gc(); return performance.memory.usedJSHeapSize; }");
}
