using System.Diagnostics;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace Conveyor.Server.Tests;

/// <summary>
/// Process-level fault test: while a server process runs tasks on PostgreSQL, the PostgreSQL server itself is
/// stopped and started again. The server's worker, scheduler and LISTEN connection reconnect with backoff, and
/// every acknowledged task ends succeeded. Runs a private cluster of its own (scripts/services/postgres.sh with
/// CONVEYOR_POSTGRES_DIR), so stopping it disturbs no other test.
/// </summary>
public sealed class PostgresRestartTests : IDisposable
{
    private const int Batches = 10;
    private const int BatchSize = 500;
    private readonly string _folder = TempFolder.Create();

    public void Dispose() => TempFolder.Delete(_folder);

    [Fact]
    public async Task PostgreSQL_stopped_and_restarted_while_tasks_run_loses_nothing()
    {
        var pgDir = Path.Combine(_folder, "pg");
        var started = await RunScriptAsync(pgDir, "start");
        var url = started.Split('\n').Select(l => l.Trim()).Single(l => l.StartsWith("export CONVEYOR_TEST_POSTGRES=", StringComparison.Ordinal))["export CONVEYOR_TEST_POSTGRES=".Length..];
        try
        {
            var environment = new Dictionary<string, string>
            {
                ["DATABASE_URL"] = url,
                ["PORT"] = "0",
                ["LOG_LEVEL"] = "warning",
                ["CONVEYOR_WORKER__LEASE_DURATION"] = "00:00:05",
                ["CONVEYOR_WORKER__HEARTBEAT_INTERVAL"] = "00:00:01",
                ["CONVEYOR_SCHEDULER__REAPER_INTERVAL"] = "00:00:01",
            };
            using var server = ConveyorProcess.Start(_folder, environment, "server");
            var line = await server.WaitForLineAsync(l => l.Contains("Conveyor serving http://", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
            var baseUrl = new Uri(line[line.IndexOf("http://", StringComparison.Ordinal)..].Split(' ')[0].TrimEnd());
            using var http = new HttpClient { BaseAddress = baseUrl, Timeout = TimeSpan.FromSeconds(30) };

            var acknowledged = new List<Guid>();
            for (var b = 0; b < Batches; b++)
            {
                var tasks = string.Join(',', Enumerable.Range(0, BatchSize).Select(i => "{\"task\":\"conveyor.noop\",\"args\":{\"i\":" + i.ToString(System.Globalization.CultureInfo.InvariantCulture) + "}}"));
                using var content = new StringContent($$"""{"tasks":[{{tasks}}]}""", Encoding.UTF8, "application/json");
                using var response = await http.PostAsync("/api/v1/tasks/batch", content);
                Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
                var body = await response.Content.ReadFromJsonAsync<JsonElement>();
                acknowledged.AddRange(body.GetProperty("ids").EnumerateArray().Select(e => e.GetGuid()));
            }

            // Stop PostgreSQL while the worker is part-way through, keep it down for 3 s, then start it again.
            await WaitUntilAsync(async () => (await CountsAsync(http)).Succeeded >= 500, TimeSpan.FromSeconds(60), "the first tasks to run");
            var before = await CountsAsync(http);
            Assert.True(before.Pending > 0, "tasks must still be waiting when PostgreSQL stops");
            await RunScriptAsync(pgDir, "stop");
            await Task.Delay(TimeSpan.FromSeconds(3));
            using (var ready = await http.GetAsync("/health/ready"))
            {
                Assert.False(ready.IsSuccessStatusCode, "/health/ready must report the outage");
            }
            await RunScriptAsync(pgDir, "restart");

            await WaitUntilAsync(async () =>
            {
                try
                {
                    var counts = await CountsAsync(http);
                    return counts.Succeeded >= acknowledged.Count && counts.Pending == 0;
                }
                catch (HttpRequestException)
                {
                    return false;
                }
            }, TimeSpan.FromSeconds(120), "every task succeeded after the restart");

            var attempts = new Dictionary<Guid, (string State, int Attempts)>();
            string? cursor = null;
            do
            {
                var page = await http.GetFromJsonAsync<JsonElement>("/api/v1/tasks?limit=1000" + (cursor is null ? "" : "&cursor=" + Uri.EscapeDataString(cursor)));
                foreach (var item in page.GetProperty("items").EnumerateArray())
                {
                    attempts[item.GetProperty("id").GetGuid()] = (item.GetProperty("state").GetString()!, item.GetProperty("attempts").GetInt32());
                }
                cursor = page.TryGetProperty("nextCursor", out var next) && next.ValueKind == JsonValueKind.String ? next.GetString() : null;
            }
            while (cursor is not null);
            Assert.All(acknowledged, id => Assert.Equal("succeeded", attempts[id].State));
            var ranTwice = acknowledged.Count(id => attempts[id].Attempts > 1);
            Console.WriteLine($"PostgreSQL restart test: {acknowledged.Count} acknowledged, {before.Succeeded} succeeded before the stop, all succeeded after; {ranTwice} ran more than once");
            // The worker reports itself reachable again at its next successful call (a heartbeat, after its backoff).
            await WaitUntilAsync(async () =>
            {
                using var ready = await http.GetAsync("/health/ready");
                return ready.IsSuccessStatusCode;
            }, TimeSpan.FromSeconds(60), "/health/ready to be healthy again");
        }
        finally
        {
            await RunScriptAsync(pgDir, "stop");
        }
    }

    private sealed record Counts(long Succeeded, long Pending);

    private static async Task<Counts> CountsAsync(HttpClient http)
    {
        var queues = await http.GetFromJsonAsync<JsonElement>("/api/v1/queues");
        var queue = queues.EnumerateArray().SingleOrDefault(q => q.GetProperty("name").GetString() == "default");
        if (queue.ValueKind != JsonValueKind.Object)
        {
            return new Counts(0, 0);
        }
        long Count(string name) => queue.TryGetProperty(name, out var value) ? value.GetInt64() : 0;
        return new Counts(Count("succeeded"), Count("queued") + Count("running") + Count("scheduled") + Count("retrying"));
    }

    private static async Task<string> RunScriptAsync(string pgDir, string command)
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "Conveyor.slnx")))
        {
            root = root.Parent;
        }
        Assert.NotNull(root);
        var info = new ProcessStartInfo("bash", [Path.Combine(root.FullName, "scripts", "services", "postgres.sh"), command])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        info.Environment["CONVEYOR_POSTGRES_DIR"] = pgDir;
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        await process.WaitForExitAsync(timeout.Token);
        Assert.True(process.ExitCode == 0, $"postgres.sh {command} failed: {await error}");
        return await output;
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out after {timeout} waiting for {what}");
            await Task.Delay(100);
        }
    }
}
