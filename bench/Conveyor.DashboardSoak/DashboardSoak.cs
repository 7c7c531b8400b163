using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.Playwright;

namespace Conveyor.Soak;

/// <summary>What a soak does: how long, how fast, how often it samples. Shared by the long soak
/// (<c>bench/Conveyor.DashboardSoak</c>, 600 s) and the short browser test (<c>DashboardSoakTests</c>).</summary>
public sealed record SoakOptions
{
    /// <summary>The server's address (the dashboard at <c>/</c>, the API at <c>/api/v1</c>).</summary>
    public required Uri BaseAddress { get; init; }

    /// <summary>Measured time, after <see cref="Warmup"/>: the first half on the overview, the second on the tasks list.</summary>
    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(600);

    /// <summary>Time at the rate before the first sample (first events, first charts, the JIT of the page's code).</summary>
    public TimeSpan Warmup { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How often the heap is read (after a full collection), with the page's DOM and main-thread figures.</summary>
    public TimeSpan SampleEvery { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Tasks per second posted to the server.</summary>
    public double Rate { get; init; } = 1000;

    /// <summary>Tasks per <c>POST /api/v1/tasks/batch</c>: at 1,000/s and 20 a batch, 50 requests a second.</summary>
    public int Batch { get; init; } = 20;

    /// <summary>The queue the tasks go to: one the server's worker consumes, so every task runs (three events each).</summary>
    public string Queue { get; init; } = "default";

    /// <summary>The server's process id, when known: its resident memory is read at each sample.</summary>
    public int? ServerProcessId { get; init; }

    /// <summary>A <c>Bearer</c> key for the feeder and the counts, when the server has keys (the page must be signed in).</summary>
    public string? ApiKey { get; init; }
}

/// <summary>One reading: the page's JS heap after a full collection, its DOM, how busy its main thread was since the
/// last reading, what the page has asked of the server, and how far the server has got.</summary>
public sealed record SoakSample(
    double Seconds, string View, long HeapUsedBytes, long HeapTotalBytes, long Nodes, long Listeners, double MainThreadBusy,
    int ApiRequests, int EventStreams, string Live, long Sent, long Succeeded, long? ServerRssBytes);

/// <summary>How quickly the page answers: a click on a navigation link until the new view shows its data, both ways, and
/// the time until the tasks list shows newer tasks without a reload (it re-reads at most once a second), and the gaps
/// between animation frames over 2 s on the view shown (a long task on the main thread is a long gap).</summary>
public sealed record SoakResponsiveness(
    string When, double ToTasksMs, double ToOverviewMs, double ListUpdateMs, double FrameGapP50Ms, double FrameGapP99Ms, double FrameGapMaxMs, int Frames)
{
    /// <summary>What did not show within 30 s, if anything (its time is then NaN).</summary>
    public string? Problem { get; init; }
}

/// <summary>The soak's figures. <paramref name="Succeeded"/> is read once the feed stopped and the server caught up
/// (at most 60 s: <paramref name="CatchUp"/>).</summary>
public sealed record SoakResult(
    IReadOnlyList<SoakSample> Samples, SoakResponsiveness Start, SoakResponsiveness End, long Sent, long Succeeded,
    double AchievedRate, TimeSpan Elapsed, TimeSpan CatchUp, int EventStreams)
{
    /// <summary>Growth of the JS heap (after collection) in <paramref name="view"/>: its last sample minus its first.</summary>
    public long HeapGrowth(string view)
    {
        var inView = Samples.Where(s => s.View == view).ToList();
        return inView.Count < 2 ? 0 : inView[^1].HeapUsedBytes - inView[0].HeapUsedBytes;
    }

    /// <summary>The largest JS heap (after collection) seen in <paramref name="view"/> minus its first sample there.</summary>
    public long HeapPeakGrowth(string view)
    {
        var inView = Samples.Where(s => s.View == view).ToList();
        return inView.Count < 2 ? 0 : inView.Max(s => s.HeapUsedBytes) - inView[0].HeapUsedBytes;
    }
}

/// <summary>
/// A dashboard left open while a <c>conveyor server</c> runs tasks at a steady rate: no-op tasks posted over HTTP in
/// batches (<c>POST /api/v1/tasks/batch</c>, paced against absolute deadlines) to a queue the server's own worker
/// consumes, so each task is enqueued, started and succeeded — three events a task on the page's
/// <c>GET /api/v1/events</c> stream. The page shows the overview for the first half of the time, then the tasks list
/// (its first page, live). Every <see cref="SoakOptions.SampleEvery"/> the JS heap is read through the DevTools
/// protocol after a full collection (<c>HeapProfiler.collectGarbage</c>, <c>Runtime.getHeapUsage</c>), with the DOM's
/// node and listener counts and the main thread's busy share (<c>Performance.getMetrics</c>). Responsiveness is measured
/// at the start and at the end.
/// </summary>
public static class DashboardSoak
{
    public const string OverviewView = "overview";
    public const string TasksView = "tasks";
    private const string FrameGapsScript = """
        () => new Promise(resolve => {
          const gaps = []; let last = performance.now(); const end = last + 2000;
          const frame = t => { gaps.push(t - last); last = t; if (t < end) requestAnimationFrame(frame); else resolve(gaps); };
          requestAnimationFrame(frame);
        })
        """;

    public static async Task<SoakResult> RunAsync(IPage page, SoakOptions options, Action<string> log, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(page);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(log);
        using var api = new HttpClient(new SocketsHttpHandler { UseProxy = false, PooledConnectionLifetime = Timeout.InfiniteTimeSpan })
        {
            BaseAddress = options.BaseAddress,
            Timeout = TimeSpan.FromSeconds(30),
        };
        if (options.ApiKey is { } key)
        {
            api.DefaultRequestHeaders.Authorization = new("Bearer", key);
        }

        // What the page asks of the server: its API reads (one a second per view at most, whatever the event rate) and
        // its event streams (one, plus one per reconnection after an overflow or an error).
        var apiRequests = 0;
        var eventStreams = 0;
        var apiPath = new Uri(options.BaseAddress, "api/v1/").AbsolutePath;
        page.Request += (_, request) =>
        {
            var path = new Uri(request.Url).AbsolutePath;
            if (!path.StartsWith(apiPath, StringComparison.Ordinal))
            {
                return;
            }
            if (path.EndsWith("/events", StringComparison.Ordinal))
            {
                Interlocked.Increment(ref eventStreams);
            }
            else
            {
                Interlocked.Increment(ref apiRequests);
            }
        };

        var cdp = await page.Context.NewCDPSessionAsync(page);
        await cdp.SendAsync("Performance.enable");
        await page.GotoAsync(options.BaseAddress.ToString());
        await page.Locator("[data-live=live]").WaitForAsync(new() { Timeout = 30_000 });

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var feeder = new Feeder(api, options);
        var feeding = feeder.RunAsync(stop.Token);
        try
        {
            log($"soak: feeding {options.Rate:0} tasks/s ({options.Batch} a batch) to queue {options.Queue}; warm-up {options.Warmup.TotalSeconds:0} s");
            await Task.Delay(options.Warmup, cancellationToken);
            feeder.ThrowIfFailed();

            var start = await ResponsivenessAsync(page, "start", cancellationToken);
            log($"soak: responsiveness at the start: {Describe(start)}");

            var samples = new List<SoakSample>();
            var clock = Stopwatch.StartNew();
            var view = OverviewView;
            var busy = await MainThreadAsync(cdp);
            var requestsBefore = Volatile.Read(ref apiRequests);
            var half = options.Duration / 2;
            for (var next = TimeSpan.Zero; ; next += options.SampleEvery)
            {
                var wait = next - clock.Elapsed;
                if (wait > TimeSpan.Zero)
                {
                    await Task.Delay(wait, cancellationToken);
                }
                feeder.ThrowIfFailed();
                if (view == OverviewView && next >= half)
                {
                    // The second half on the tasks list: its first page re-read at most once a second on the queue's events.
                    await NavigateAsync(page, TasksView);
                    view = TasksView;
                }
                var heap = await HeapAsync(cdp);
                var (nodes, listeners, task, timestamp) = await MetricsAsync(cdp);
                var busyShare = timestamp > busy.Timestamp ? (task - busy.Task) / (timestamp - busy.Timestamp) : 0;
                busy = (task, timestamp);
                var requestsNow = Volatile.Read(ref apiRequests);
                var sample = new SoakSample(
                    Math.Round(clock.Elapsed.TotalSeconds, 1), view, heap.Used, heap.Total, nodes, listeners, busyShare,
                    requestsNow - requestsBefore, Volatile.Read(ref eventStreams),
                    await page.Locator("[data-live]").GetAttributeAsync("data-live") ?? "?",
                    feeder.Sent, await SucceededAsync(api, options.Queue, cancellationToken), ServerRss(options.ServerProcessId));
                requestsBefore = requestsNow;
                samples.Add(sample);
                log("soak: " + Describe(sample));
                if (next >= options.Duration)
                {
                    break;
                }
            }

            var end = await ResponsivenessAsync(page, "end", cancellationToken);
            log($"soak: responsiveness at the end: {Describe(end)}");
            var elapsed = clock.Elapsed + options.Warmup;
            await stop.CancelAsync();
            await feeding;
            feeder.ThrowIfFailed();
            // The server kept up when every acknowledged task has run: it has a minute to finish what it holds.
            var catchUp = Stopwatch.StartNew();
            long succeeded;
            while ((succeeded = await SucceededAsync(api, options.Queue, cancellationToken)) < feeder.Sent && catchUp.Elapsed < TimeSpan.FromSeconds(60))
            {
                await Task.Delay(100, cancellationToken);
            }
            return new SoakResult(samples, start, end, feeder.Sent, succeeded, feeder.Sent / feeder.Elapsed.TotalSeconds, elapsed, catchUp.Elapsed,
                Volatile.Read(ref eventStreams));
        }
        finally
        {
            await stop.CancelAsync();
            await feeding.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            await cdp.DetachAsync();
        }
    }

    public static string Describe(SoakSample s) => string.Create(CultureInfo.InvariantCulture,
        $"{s.Seconds,6:0.0} s {s.View,-8} heap {Mib(s.HeapUsedBytes):0.00} MiB (of {Mib(s.HeapTotalBytes):0.0}), {s.Nodes} nodes, {s.Listeners} listeners, " +
        $"main thread {s.MainThreadBusy:P0} busy, {s.ApiRequests} API reads, {s.EventStreams} event streams so far, {s.Live}; " +
        $"server: {s.Sent:N0} sent, {s.Succeeded:N0} succeeded{(s.ServerRssBytes is { } rss ? $", RSS {Mib(rss):0} MiB" : "")}");

    public static string Describe(SoakResponsiveness r) => string.Create(CultureInfo.InvariantCulture,
        $"overview → tasks {r.ToTasksMs:0} ms, tasks → overview {r.ToOverviewMs:0} ms, tasks list updated in {r.ListUpdateMs:0} ms; frame gaps p50 {r.FrameGapP50Ms:0.0} ms, " +
        $"p99 {r.FrameGapP99Ms:0.0} ms, max {r.FrameGapMaxMs:0.0} ms ({r.Frames} frames in 2 s){(r.Problem is { } p ? "; FAILED: " + p : "")}");

    public static double Mib(long bytes) => bytes / 1048576.0;

    /// <summary>Clicks the navigation's link to <paramref name="view"/> and waits until the view shows its data: the
    /// tasks list's first row, or the overview's depth table and charts. Returns the milliseconds it took.</summary>
    public static async Task<double> NavigateAsync(IPage page, string view)
    {
        ArgumentNullException.ThrowIfNull(page);
        var clock = Stopwatch.StartNew();
        await page.Locator("#nav").GetByRole(AriaRole.Link, new() { Name = view == TasksView ? "Tasks" : "Overview", Exact = true }).ClickAsync();
        if (view == TasksView)
        {
            await page.Locator("table.tasks tbody tr").First.WaitForAsync(new() { Timeout = 30_000 });
        }
        else
        {
            await page.Locator("table.depth tbody tr").First.WaitForAsync(new() { Timeout = 30_000 });
            await page.Locator("[data-chart=Throughput] path.line[d^='M']").First.WaitForAsync(new() { State = WaitForSelectorState.Attached, Timeout = 30_000 });
        }
        return clock.Elapsed.TotalMilliseconds;
    }

    /// <summary>Both navigations (ending on the view it started on), the tasks list's next update, then the frame gaps
    /// on the view it started on.</summary>
    private static async Task<SoakResponsiveness> ResponsivenessAsync(IPage page, string when, CancellationToken cancellationToken)
    {
        var onTasks = await page.Locator("table.tasks").CountAsync() > 0;
        double toTasks = double.NaN, toOverview = double.NaN, listUpdate = double.NaN;
        string? problem = null;
        try
        {
            if (onTasks)
            {
                toOverview = await NavigateAsync(page, OverviewView);
                toTasks = await NavigateAsync(page, TasksView);
                listUpdate = await ListUpdateAsync(page);
            }
            else
            {
                toTasks = await NavigateAsync(page, TasksView);
                listUpdate = await ListUpdateAsync(page);
                toOverview = await NavigateAsync(page, OverviewView);
            }
        }
        catch (TimeoutException ex)
        {
            // Kept as a figure (the soak's other readings stand); the page's state is in the message.
            var shown = await page.Locator("main").InnerTextAsync();
            problem = $"{ex.Message.Split('\n')[0]} (the page shows: {shown[..Math.Min(300, shown.Length)].ReplaceLineEndings(" ")})";
        }
        cancellationToken.ThrowIfCancellationRequested();
        var gaps = (await page.EvaluateAsync<double[]>(FrameGapsScript)).Order().ToArray();
        return new SoakResponsiveness(when, toTasks, toOverview, listUpdate, Percentile(gaps, 50), Percentile(gaps, 99), gaps.Length == 0 ? 0 : gaps[^1], gaps.Length)
        {
            Problem = problem,
        };
    }

    /// <summary>On the tasks list: milliseconds until its first row is another task (newer ones arrive all the time).</summary>
    private static async Task<double> ListUpdateAsync(IPage page)
    {
        var first = await page.Locator("table.tasks tbody tr").First.GetAttributeAsync("data-task-id");
        var clock = Stopwatch.StartNew();
        await page.WaitForFunctionAsync("id => document.querySelector('table.tasks tbody tr')?.dataset.taskId !== id", first,
            new() { Timeout = 30_000, PollingInterval = 10 });
        return clock.Elapsed.TotalMilliseconds;
    }

    private static double Percentile(double[] sorted, double p) =>
        sorted.Length == 0 ? 0 : sorted[Math.Clamp((int)Math.Ceiling(p / 100 * sorted.Length) - 1, 0, sorted.Length - 1)];

    private static async Task<(long Used, long Total)> HeapAsync(ICDPSession cdp)
    {
        await cdp.SendAsync("HeapProfiler.collectGarbage");
        var usage = await cdp.SendAsync("Runtime.getHeapUsage") ?? throw new InvalidOperationException("Runtime.getHeapUsage gave no answer.");
        return ((long)usage.GetProperty("usedSize").GetDouble(), (long)usage.GetProperty("totalSize").GetDouble());
    }

    private static async Task<(double Task, double Timestamp)> MainThreadAsync(ICDPSession cdp)
    {
        var (_, _, task, timestamp) = await MetricsAsync(cdp);
        return (task, timestamp);
    }

    private static async Task<(long Nodes, long Listeners, double TaskDuration, double Timestamp)> MetricsAsync(ICDPSession cdp)
    {
        var answer = await cdp.SendAsync("Performance.getMetrics") ?? throw new InvalidOperationException("Performance.getMetrics gave no answer.");
        var metrics = answer.GetProperty("metrics").EnumerateArray()
            .ToDictionary(m => m.GetProperty("name").GetString() ?? "", m => m.GetProperty("value").GetDouble(), StringComparer.Ordinal);
        return ((long)metrics.GetValueOrDefault("Nodes"), (long)metrics.GetValueOrDefault("JSEventListeners"),
            metrics.GetValueOrDefault("TaskDuration"), metrics.GetValueOrDefault("Timestamp"));
    }

    private static async Task<long> SucceededAsync(HttpClient api, string queue, CancellationToken cancellationToken)
    {
        using var document = JsonDocument.Parse(await api.GetStringAsync("api/v1/queues", cancellationToken));
        foreach (var q in document.RootElement.EnumerateArray())
        {
            if (q.GetProperty("name").GetString() == queue)
            {
                return q.GetProperty("succeeded").GetInt64();
            }
        }
        return 0;
    }

    /// <summary>VmRSS of a process (Linux), or null.</summary>
    private static long? ServerRss(int? processId)
    {
        if (processId is not { } pid || !OperatingSystem.IsLinux())
        {
            return null;
        }
        try
        {
            var line = File.ReadLines($"/proc/{pid}/status").FirstOrDefault(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
            return line is null ? null : long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>Posts batches of no-op tasks at the rate, each at its absolute deadline (start + i × batch ÷ rate), so a
    /// slow answer does not lower the rate over the run; counts the tasks the server acknowledged (201).</summary>
    private sealed class Feeder(HttpClient api, SoakOptions options)
    {
        private readonly byte[] _body = Body(options);
        private readonly Stopwatch _clock = new();
        private long _sent;
        private Exception? _failure;

        public long Sent => Interlocked.Read(ref _sent);

        public TimeSpan Elapsed => _clock.Elapsed;

        public void ThrowIfFailed()
        {
            if (_failure is { } failure)
            {
                throw new InvalidOperationException("The feeder failed: " + failure.Message, failure);
            }
        }

        public async Task RunAsync(CancellationToken cancellationToken)
        {
            var ticksPerBatch = Stopwatch.Frequency * options.Batch / options.Rate;
            var start = Stopwatch.GetTimestamp();
            _clock.Start();
            try
            {
                for (long i = 0; !cancellationToken.IsCancellationRequested; i++)
                {
                    var remaining = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), start + (long)(i * ticksPerBatch));
                    if (remaining >= TimeSpan.FromMilliseconds(1))
                    {
                        await Task.Delay(TimeSpan.FromMilliseconds(Math.Floor(remaining.TotalMilliseconds)), cancellationToken);
                    }
                    using var content = new ByteArrayContent(_body);
                    content.Headers.ContentType = new("application/json");
                    using var response = await api.PostAsync("api/v1/tasks/batch", content, cancellationToken);
                    if (response.StatusCode != HttpStatusCode.Created)
                    {
                        throw new InvalidOperationException($"POST /api/v1/tasks/batch answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancellationToken)}");
                    }
                    Interlocked.Add(ref _sent, options.Batch);
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
            }
            catch (Exception ex) when (ex is HttpRequestException or InvalidOperationException or TaskCanceledException)
            {
                _failure = ex;
            }
            finally
            {
                _clock.Stop();
            }
        }

        private static byte[] Body(SoakOptions options)
        {
            var task = JsonSerializer.Serialize(new Dictionary<string, object> { ["task"] = "conveyor.noop", ["args"] = new Dictionary<string, object>(), ["queue"] = options.Queue });
            var body = new StringBuilder("{\"tasks\":[");
            for (var i = 0; i < options.Batch; i++)
            {
                body.Append(i == 0 ? "" : ",").Append(task);
            }
            return Encoding.UTF8.GetBytes(body.Append("]}").ToString());
        }
    }
}
