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

    [Fact]
    public async Task A_view_whose_read_is_slower_than_its_interval_still_shows_its_data_while_events_stream()
    {
        // GET /api/v1/queues answers after 1.5 s (as it does over a store of a million tasks on a busy machine) while
        // tasks are enqueued all the time: every event asks the overview to read again, at most once a second. A read
        // must finish before the next starts; were each cut short by the next, the depth table would never show.
        await using var server = await DashboardServer.StartAsync();
        var page = await fixture.NewPageAsync();
        await page.RouteAsync("**/api/v1/queues", async route =>
        {
            await Task.Delay(1500);
            try
            {
                await route.ContinueAsync();
            }
            catch (PlaywrightException)
            {
                // The page gave up the request (it left the view): nothing to answer.
            }
        });
        using var stop = new CancellationTokenSource();
        var feeding = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                await server.PostAsync("api/v1/tasks/batch", """{"tasks": [{"task": "conveyor.noop", "queue": "load-slow"}, {"task": "conveyor.noop", "queue": "load-slow"}]}""");
                await Task.Delay(50);
            }
        });
        try
        {
            await page.GotoAsync(server.BaseAddress.ToString());
            await Expect(page.Locator("[data-live=live]")).ToBeVisibleAsync();
            await Expect(page.Locator("table.depth [data-queue=load-slow]")).ToBeVisibleAsync(new() { Timeout = 20_000 });
        }
        finally
        {
            await stop.CancelAsync();
            await feeding;
        }
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
