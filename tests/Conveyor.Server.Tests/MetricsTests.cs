using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Conveyor.Server.Tests;

/// <summary><c>GET /metrics</c> of a real <c>conveyor server</c> process after it ran tasks that succeed, retry and die:
/// the series exist with their labels, and every metric and label that deploy/'s alert rules and Grafana dashboard use
/// is among them, so that the rules and the dashboard cannot drift from the code.</summary>
public sealed partial class MetricsTests : IDisposable
{
    private const string Key = "metrics-test-key-0123456789abcdefghij";
    private readonly string _folder = TempFolder.Create();

    public void Dispose() => TempFolder.Delete(_folder);

    private static readonly string[] DeployFiles =
    [
        Path.Combine("deploy", "prometheus", "conveyor-alerts.yml"),
        Path.Combine("deploy", "grafana", "conveyor-dashboard.json"),
        Path.Combine("deploy", "kubernetes", "worker-hpa.yaml"),
    ];

    [Fact]
    public async Task Scrape_after_tasks_has_every_series_the_alert_rules_and_dashboard_use()
    {
        var environment = new Dictionary<string, string>
        {
            ["DATABASE_URL"] = "sqlite:///" + Path.Combine(_folder, "metrics.db"),
            ["LOG_LEVEL"] = "warning",
            ["CONVEYOR_API_KEYS"] = Key,
            ["CONVEYOR_METRICS_REFRESH_INTERVAL"] = "00:00:00.2",
            ["CONVEYOR_WORKER__QUEUES"] = "default,mail",
        };
        using var server = ConveyorProcess.Start(_folder, environment, "server", "--port", "0");
        var line = await server.WaitForLineAsync(l => l.StartsWith("Conveyor serving http://127.0.0.1:", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        using var http = new HttpClient { BaseAddress = new Uri(line["Conveyor serving ".Length..].Trim()) };

        // Behind the API's keys, as /api is.
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/metrics")).StatusCode);
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);

        var succeeded = await EnqueueAsync(http, new { task = "conveyor.noop", queue = "mail" });
        // A negative sleep fails permanently: dead at once.
        var dead = await EnqueueAsync(http, new { task = "conveyor.sleep", args = new { ms = -1 } });
        // A time limit fails the first attempt (retried), then the second (dead).
        var retried = await EnqueueAsync(http, new
        {
            task = "conveyor.sleep",
            args = new { ms = 10_000 },
            timeout = "PT0.1S",
            maxAttempts = 2,
            retry = new { backoff = "fixed", delay = "PT0.1S" },
        });
        var waiting = await EnqueueAsync(http, new { task = "conveyor.noop", queue = "idle" });
        await WaitForStateAsync(http, succeeded, "succeeded");
        await WaitForStateAsync(http, dead, "dead");
        await WaitForStateAsync(http, retried, "dead");
        Assert.NotEqual(Guid.Empty, waiting);

        // Counters are recorded after the completion is written, which the state above shows first: scrape until
        // the last of them is in.
        var series = await ScrapeUntilAsync(http, s => Value(s, "conveyor_tasks_dead_total", ("task", "conveyor.sleep")) >= 2);

        Assert.Equal(1, Value(series, "conveyor_tasks_succeeded_total", ("task", "conveyor.noop"), ("queue", "mail")));
        Assert.Equal(1, Value(series, "conveyor_tasks_retried_total", ("task", "conveyor.sleep"), ("queue", "default")));
        Assert.Equal(3, Value(series, "conveyor_tasks_failed_total", ("task", "conveyor.sleep")));
        Assert.Equal(1, Value(series, "conveyor_tasks_enqueued_total", ("task", "conveyor.noop"), ("queue", "idle")));
        Assert.Equal(1, Value(series, "conveyor_queue_depth", ("queue", "idle"), ("state", "queued")));
        Assert.True(Value(series, "conveyor_queue_oldest_age_seconds", ("queue", "idle")) >= 0);
        Assert.Equal(1, Value(series, "conveyor_workers_alive"));
        Assert.True(Value(series, "conveyor_task_duration_seconds_count", ("task", "conveyor.noop"), ("outcome", "succeeded")) >= 1);
        Assert.True(Value(series, "conveyor_task_queue_wait_seconds_count", ("task", "conveyor.noop")) >= 1);
        Assert.True(Value(series, "conveyor_backend_duration_seconds_count", ("operation", "fetch")) >= 1);

        // What deploy/ uses exists: each metric name, and each label it groups or filters conveyor series by.
        var names = series.Select(s => s.Name).ToHashSet(StringComparer.Ordinal);
        var labels = series.SelectMany(s => s.Labels.Keys).ToHashSet(StringComparer.Ordinal);
        // conveyor_leases_expired_total appears once a lease expires (no lease ran out here); its name is the core's.
        names.Add("conveyor_leases_expired_total");
        foreach (var file in DeployFiles)
        {
            var text = await File.ReadAllTextAsync(Path.Combine(ConveyorProcess.RepositoryRoot, file));
            var used = MetricName().Matches(text).Select(m => m.Value).Distinct().ToList();
            Assert.NotEmpty(used);
            foreach (var name in used)
            {
                // The HPA's adapter renames the series it serves (conveyor_queue_depth_queued): its source is conveyor_queue_depth.
                Assert.True(names.Contains(name) || (file.EndsWith(".yaml", StringComparison.Ordinal) && name == "conveyor_queue_depth_queued"),
                    $"{file} uses {name}, which the server does not report");
            }
            foreach (var label in LabelsUsed(text))
            {
                Assert.True(labels.Contains(label) || label is "le", $"{file} uses label {label}, which no Conveyor series has");
            }
        }
    }

    private static async Task<Guid> EnqueueAsync(HttpClient http, object body)
    {
        using var response = await http.PostAsJsonAsync("/api/v1/tasks", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Created, text);
        return JsonDocument.Parse(text).RootElement.GetProperty("id").GetGuid();
    }

    private static async Task WaitForStateAsync(HttpClient http, Guid id, string state)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        string? last;
        do
        {
            last = (await http.GetFromJsonAsync<JsonElement>($"/api/v1/tasks/{id}")).GetProperty("state").GetString();
            if (last == state)
            {
                return;
            }
            await Task.Delay(25);
        }
        while (DateTime.UtcNow < deadline);
        Assert.Fail($"Task {id} is {last}, not {state}");
    }

    private static async Task<List<Series>> ScrapeUntilAsync(HttpClient http, Func<List<Series>, bool> done)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        string text;
        while (true)
        {
            using var response = await http.GetAsync("/metrics");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            text = await response.Content.ReadAsStringAsync();
            var series = Parse(text);
            if (done(series))
            {
                return series;
            }
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail("The scrape never showed the expected series:\n" + text);
            }
            await Task.Delay(100);
        }
    }

    internal sealed record Series(string Name, IReadOnlyDictionary<string, string> Labels, double Value);

    /// <summary>The samples of Prometheus's text format (comments left out).</summary>
    internal static List<Series> Parse(string text)
    {
        var series = new List<Series>();
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (line.StartsWith('#'))
            {
                continue;
            }
            var match = Sample().Match(line);
            Assert.True(match.Success, $"Not a sample line: {line}");
            var labels = LabelPair().Matches(match.Groups["labels"].Value)
                .ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value, StringComparer.Ordinal);
            series.Add(new Series(match.Groups["name"].Value, labels,
                double.Parse(match.Groups["value"].Value.Replace("+Inf", "Infinity", StringComparison.Ordinal), System.Globalization.CultureInfo.InvariantCulture)));
        }
        return series;
    }

    /// <summary>The sum of the samples of <paramref name="name"/> whose labels include <paramref name="labels"/>; -1 when none.</summary>
    private static double Value(List<Series> series, string name, params (string Name, string Value)[] labels)
    {
        var matching = series.Where(s => s.Name == name && labels.All(l => s.Labels.TryGetValue(l.Name, out var v) && v == l.Value)).ToList();
        return matching.Count == 0 ? -1 : matching.Sum(s => s.Value);
    }

    /// <summary>Label names in <c>by (…)</c> groupings, selectors <c>{name="…"}</c> and legends <c>{{name}}</c>.</summary>
    private static IEnumerable<string> LabelsUsed(string text)
    {
        foreach (Match by in ByClause().Matches(text))
        {
            foreach (var label in by.Groups[1].Value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                yield return label;
            }
        }
        foreach (Match selector in SelectorLabel().Matches(text))
        {
            yield return selector.Groups[1].Value;
        }
    }

    [GeneratedRegex(@"\bconveyor_[a-z_]+")]
    private static partial Regex MetricName();

    [GeneratedRegex(@"\bby \(([a-z_, ]+)\)")]
    private static partial Regex ByClause();

    [GeneratedRegex(@"[{,]\s*([a-z_]+)\s*=~?\s*\\?""")]
    private static partial Regex SelectorLabel();

    [GeneratedRegex(@"^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>.*)\})?\s+(?<value>\S+)(\s+\d+)?$")]
    private static partial Regex Sample();

    [GeneratedRegex(@"([a-zA-Z_][a-zA-Z0-9_]*)=""((?:[^""\\]|\\.)*)""")]
    private static partial Regex LabelPair();
}
