using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Conveyor.Soak;
using Microsoft.Playwright;

// The dashboard soak (docs/benchmarks.md#dashboard-soak): a `conveyor server` on a fresh SQLite file running its own
// worker, fed no-op tasks over HTTP at --rate, while headless Chromium keeps the dashboard open for --duration seconds
// (the overview, then the tasks list). Markdown to stdout, progress to stderr, --json for the figures.
var duration = new Option<double>("--duration") { Description = "Seconds measured after the warm-up: the first half on the overview, the second on the tasks list.", DefaultValueFactory = _ => 600 };
var warmup = new Option<double>("--warmup") { Description = "Seconds at the rate before the first sample.", DefaultValueFactory = _ => 10 };
var sample = new Option<double>("--sample") { Description = "Seconds between heap readings (each after a full collection).", DefaultValueFactory = _ => 10 };
var rate = new Option<double>("--rate") { Description = "Tasks per second posted to the server.", DefaultValueFactory = _ => 1000 };
var batch = new Option<int>("--batch") { Description = "Tasks per POST /api/v1/tasks/batch.", DefaultValueFactory = _ => 20 };
var server = new Option<string?>("--server") { Description = "The conveyor executable or Conveyor.Server.dll (default: this checkout's Release build)." };
var chromium = new Option<string?>("--chromium") { Description = "Chromium's executable (default: $CONVEYOR_CHROMIUM, /usr/bin/chromium)." };
var json = new Option<string?>("--json") { Description = "Also write the figures to this file." };
var root = new RootCommand("Keeps Conveyor's dashboard open in headless Chromium while a conveyor server runs tasks at a steady rate; samples the page's JS heap and responsiveness.")
{
    duration, warmup, sample, rate, batch, server, chromium, json,
};
root.SetAction(async (parse, ct) =>
{
    var options = new SoakCommand(parse.GetValue(duration), parse.GetValue(warmup), parse.GetValue(sample), parse.GetValue(rate), parse.GetValue(batch),
        parse.GetValue(server), parse.GetValue(chromium), parse.GetValue(json));
    return await options.RunAsync(ct);
});
return await root.Parse(args).InvokeAsync();

internal sealed record SoakCommand(double Duration, double Warmup, double Sample, double Rate, int Batch, string? Server, string? Chromium, string? Json)
{
    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        if (Duration <= 0 || Warmup < 0 || Sample <= 0 || Rate <= 0 || Batch <= 0)
        {
            await Console.Error.WriteLineAsync("--duration, --sample, --rate and --batch must be greater than zero, --warmup zero or more.");
            return 2;
        }
        var program = Server ?? DefaultServer();
        var browserPath = Chromium ?? Environment.GetEnvironmentVariable("CONVEYOR_CHROMIUM") ?? "/usr/bin/chromium";
        if (!File.Exists(program) || !File.Exists(browserPath))
        {
            await Console.Error.WriteLineAsync($"Not found: {(File.Exists(program) ? browserPath : program)}. Build the server (dotnet build -c Release src/Conveyor.Server) or pass --server; install chromium or pass --chromium.");
            return 2;
        }
        var folder = Directory.CreateTempSubdirectory("conveyor-dashboard-soak-");
        var loadBefore = LoadAverage();
        var child = await SoakServer.StartAsync(program, folder.FullName, cancellationToken);
        try
        {
            using var playwright = await Playwright.CreateAsync();
            await using var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
            {
                ExecutablePath = browserPath,
                Headless = true,
                Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            });
            var context = await browser.NewContextAsync(new BrowserNewContextOptions { ViewportSize = new ViewportSize { Width = 1280, Height = 900 } });
            var page = await context.NewPageAsync();
            var soak = new SoakOptions
            {
                BaseAddress = child.BaseAddress,
                Duration = TimeSpan.FromSeconds(Duration),
                Warmup = TimeSpan.FromSeconds(Warmup),
                SampleEvery = TimeSpan.FromSeconds(Sample),
                Rate = Rate,
                Batch = Batch,
                ServerProcessId = child.ProcessId,
            };
            var result = await DashboardSoak.RunAsync(page, soak, line => Console.Error.WriteLine(line), cancellationToken);
            var loadAfter = LoadAverage();
            Console.WriteLine(Report(soak, result, program, browser.Version, loadBefore, loadAfter));
            if (Json is { } path)
            {
                await File.WriteAllTextAsync(path, JsonSerializer.Serialize(new
                {
                    options = new { Duration, Warmup, Sample, Rate, Batch },
                    chromium = browser.Version,
                    loadAverage = new { before = loadBefore, after = loadAfter },
                    result,
                }, JsonOptions), cancellationToken);
            }
            return result.Succeeded >= result.Sent && result.Start.Problem is null && result.End.Problem is null ? 0 : 1;
        }
        finally
        {
            child.Dispose();
            try
            {
                folder.Delete(recursive: true);
            }
            catch (IOException)
            {
                // A file still held by the ending server: the system's temporary folder is cleaned anyway.
            }
        }
    }

    private static string DefaultServer()
    {
        var folder = new DirectoryInfo(AppContext.BaseDirectory);
        while (folder is not null && !File.Exists(Path.Combine(folder.FullName, "Conveyor.slnx")))
        {
            folder = folder.Parent;
        }
        return Path.Combine(folder?.FullName ?? ".", "src", "Conveyor.Server", "bin", "Release", "net10.0", "Conveyor.Server.dll");
    }

    private static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "?";

    private static string Report(SoakOptions o, SoakResult r, string program, string chromiumVersion, string loadBefore, string loadAfter)
    {
        var c = CultureInfo.InvariantCulture;
        var s = new StringBuilder();
        s.AppendLine(c, $"## Dashboard soak: {o.Duration.TotalSeconds:0} s at {o.Rate:0} tasks/s");
        s.AppendLine();
        s.AppendLine(c, $"`conveyor server` ({program}) on a fresh SQLite file, its own worker; no-op tasks posted in batches of {o.Batch} " +
            $"(`POST /api/v1/tasks/batch`) to `{o.Queue}`: {r.Sent:N0} sent in {r.Elapsed.TotalSeconds:0} s ({r.AchievedRate:0}/s), " +
            $"{r.Succeeded:N0} succeeded ({(r.Succeeded >= r.Sent ? $"all, {r.CatchUp.TotalSeconds:0.0} s after the feed stopped" : "NOT all within 60 s")}). " +
            $"Headless Chromium {chromiumVersion}; warm-up {o.Warmup.TotalSeconds:0} s; the overview for the first half, the tasks list for the second. " +
            $"Load average before {loadBefore}, after {loadAfter}; {Environment.ProcessorCount} cores.");
        s.AppendLine();
        s.AppendLine("| s | view | JS heap after GC (MiB) | heap total (MiB) | DOM nodes | listeners | main thread busy | API reads | event streams | live | sent | succeeded | server RSS (MiB) |");
        s.AppendLine("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |");
        foreach (var x in r.Samples)
        {
            s.AppendLine(c, $"| {x.Seconds:0} | {x.View} | {DashboardSoak.Mib(x.HeapUsedBytes):0.00} | {DashboardSoak.Mib(x.HeapTotalBytes):0.0} | {x.Nodes} | {x.Listeners} | " +
                $"{x.MainThreadBusy:P0} | {x.ApiRequests} | {x.EventStreams} | {x.Live} | {x.Sent:N0} | {x.Succeeded:N0} | {(x.ServerRssBytes is { } rss ? DashboardSoak.Mib(rss).ToString("0", c) : "")} |");
        }
        s.AppendLine();
        foreach (var view in new[] { DashboardSoak.OverviewView, DashboardSoak.TasksView })
        {
            s.AppendLine(c, $"- {view}: JS heap growth {DashboardSoak.Mib(r.HeapGrowth(view)):+0.00;-0.00} MiB first to last sample, peak {DashboardSoak.Mib(r.HeapPeakGrowth(view)):+0.00;-0.00} MiB");
        }
        s.AppendLine();
        s.AppendLine("| when | overview → tasks (ms) | tasks → overview (ms) | tasks list updated (ms) | frame gap p50 (ms) | p99 (ms) | max (ms) | frames in 2 s |");
        s.AppendLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (var x in new[] { r.Start, r.End })
        {
            s.AppendLine(c, $"| {x.When} | {x.ToTasksMs:0} | {x.ToOverviewMs:0} | {x.ListUpdateMs:0} | {x.FrameGapP50Ms:0.0} | {x.FrameGapP99Ms:0.0} | {x.FrameGapMaxMs:0.0} | {x.Frames} |");
        }
        foreach (var x in new[] { r.Start, r.End }.Where(x => x.Problem is not null))
        {
            s.AppendLine();
            s.AppendLine(c, $"**At the {x.When}, a view did not show within 30 s:** {x.Problem}");
        }
        return s.ToString();
    }
}

/// <summary>The <c>conveyor server</c> child process on a free loopback port and a fresh SQLite file.</summary>
internal sealed class SoakServer : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private SoakServer(Process process) => _process = process;

    public Uri BaseAddress { get; private set; } = null!;

    public int ProcessId => _process.Id;

    public static async Task<SoakServer> StartAsync(string program, string folder, CancellationToken cancellationToken)
    {
        var dll = program.EndsWith(".dll", StringComparison.OrdinalIgnoreCase);
        var info = new ProcessStartInfo(dll ? "dotnet" : program)
        {
            WorkingDirectory = folder,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (dll)
        {
            info.ArgumentList.Add(program);
        }
        info.ArgumentList.Add("server");
        foreach (var name in info.Environment.Keys.Where(n => n.StartsWith("CONVEYOR_", StringComparison.Ordinal) || n.StartsWith("OTEL_", StringComparison.Ordinal)
            || n is "DATABASE_URL" or "REDIS_URL" or "AMQP_URL" or "HOST" or "PORT" or "ASPNETCORE_URLS" or "URLS").ToList())
        {
            info.Environment.Remove(name);
        }
        info.Environment["HOST"] = "127.0.0.1";
        info.Environment["PORT"] = "0";
        info.Environment["DATABASE_URL"] = "sqlite:///" + Path.Combine(folder, "conveyor.db");
        info.Environment["CONVEYOR_HTTP__ALLOWED_HOSTS"] = "127.0.0.1";
        info.Environment["LOG_LEVEL"] = "Warning";
        info.Environment["DOTNET_ENVIRONMENT"] = "Production";
        info.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        var process = new Process { StartInfo = info };
        var server = new SoakServer(process);
        var serving = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not { } line)
            {
                return;
            }
            lock (server._output)
            {
                server._output.AppendLine(line);
            }
            if (line.StartsWith("Conveyor serving ", StringComparison.Ordinal))
            {
                serving.TrySetResult(line);
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is { } line)
            {
                lock (server._output)
                {
                    server._output.AppendLine(line);
                }
            }
        };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            var line = await serving.Task.WaitAsync(TimeSpan.FromSeconds(60), cancellationToken);
            server.BaseAddress = new Uri(line["Conveyor serving ".Length..].Trim().Split(' ')[0].TrimEnd('/') + "/");
            return server;
        }
        catch (TimeoutException)
        {
            server.Dispose();
            string output;
            lock (server._output)
            {
                output = server._output.ToString();
            }
            throw new InvalidOperationException("conveyor server did not say where it serves within 60 s. Its output: " + output);
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }
        _process.Dispose();
    }
}
