using Conveyor.Soak;
using Xunit.Abstractions;

namespace Conveyor.Dashboard.Tests;

/// <summary>
/// The short form of the dashboard soak (bench/Conveyor.DashboardSoak runs it for 10 minutes): a server running its own
/// worker at 1,000 no-op tasks a second — three events a task on the page's stream — while the page shows the overview
/// for 15 s, then the tasks list for 15 s. The JS heap after a full collection must not grow by more than 2 MiB in
/// either view (readings of a flat page differ by up to some 0.3 MiB: responses in flight, compiled code): a page that
/// kept anything per event (a list of the events it saw, a row per task, a listener per reload) would hold some 45,000
/// more events by the end of a view, 45 bytes each past the bound, and fail. The page must also still answer: both
/// navigations show their data, and the tasks list shows newer tasks without a reload.
/// </summary>
[Collection(BrowserCollection.Name)]
public sealed class DashboardSoakTests(BrowserFixture fixture, ITestOutputHelper output)
{
    private const long HeapGrowthBound = 2 << 20;

    [Fact]
    public async Task Dashboard_open_at_1000_tasks_a_second_keeps_its_JS_heap_flat_and_stays_live()
    {
        await using var server = await DashboardServer.StartAsync();
        var page = await fixture.NewPageAsync();
        var options = new SoakOptions
        {
            BaseAddress = server.BaseAddress,
            Warmup = TimeSpan.FromSeconds(5),
            Duration = TimeSpan.FromSeconds(30),
            SampleEvery = TimeSpan.FromSeconds(5),
            Rate = 1000,
            ServerProcessId = server.Process.Id,
        };
        var result = await DashboardSoak.RunAsync(page, options, output.WriteLine);

        var summary = $"dashboard: soak of {result.Elapsed.TotalSeconds:0} s at {result.AchievedRate:0} tasks/s ({result.Sent:N0} sent, {result.Succeeded:N0} succeeded): " +
            $"JS heap {DashboardSoak.Mib(result.Samples[0].HeapUsedBytes):0.00} MiB at the start, {DashboardSoak.Mib(result.Samples[^1].HeapUsedBytes):0.00} MiB at the end; " +
            $"growth on the overview {DashboardSoak.Mib(result.HeapPeakGrowth(DashboardSoak.OverviewView)):0.00} MiB, on the tasks list {DashboardSoak.Mib(result.HeapPeakGrowth(DashboardSoak.TasksView)):0.00} MiB; " +
            $"start: {DashboardSoak.Describe(result.Start)}; end: {DashboardSoak.Describe(result.End)}";
        output.WriteLine(summary);
        Console.WriteLine(summary);

        // The page saw the load it was meant to: the rate held, and the server ran every task.
        Assert.True(result.AchievedRate >= 900, summary);
        Assert.True(result.Succeeded >= result.Sent, summary);
        foreach (var view in new[] { DashboardSoak.OverviewView, DashboardSoak.TasksView })
        {
            var samples = result.Samples.Where(s => s.View == view).ToList();
            Assert.True(samples.Count >= 3, $"{view}: {samples.Count} samples");
            Assert.True(result.HeapPeakGrowth(view) <= HeapGrowthBound, $"{view}: {string.Join("; ", samples.Select(DashboardSoak.Describe))}");
            // Listeners added per reload or per event would grow by thousands.
            Assert.True(samples.Max(s => s.Listeners) - samples[0].Listeners <= 50, $"{view}: {string.Join("; ", samples.Select(DashboardSoak.Describe))}");
        }
        // Both views showed their data at the start and at the end, and the list moved on to newer tasks on its own
        // (it re-reads at most once a second).
        Assert.Null(result.Start.Problem);
        Assert.Null(result.End.Problem);
        Assert.True(result.End.ListUpdateMs < 10_000, summary);
    }
}
