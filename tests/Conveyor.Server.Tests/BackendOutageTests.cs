using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using static Conveyor.Server.Tests.FaultTests;

namespace Conveyor.Server.Tests;

/// <summary>
/// The HTTP API and readiness probe during a real outage: the server (in this process, on a private redis-server) while
/// Redis is killed and started again. API requests answer 503 with problem details and <c>Retry-After</c>, not 500;
/// the outage and its end are logged once each, not per request or per probe; <c>/health/ready</c> answers 503 within
/// a bound, not after StackExchange.Redis's 5 s timeout.
/// </summary>
public sealed class BackendOutageTests : IDisposable
{
    // HealthCheckTimeout is 2 s; a probe that waited for StackExchange.Redis's 5 s timeout would take about 5.5 s.
    private static readonly TimeSpan ProbeBound = TimeSpan.FromSeconds(3.5);
    private readonly string _folder = TempFolder.Create();

    public void Dispose() => TempFolder.Delete(_folder);

    [Fact]
    public async Task Redis_outage_answers_503_with_Retry_After_logs_once_and_readiness_answers_within_bound()
    {
        await using var redis = await PrivateRedis.StartAsync(Path.Combine(_folder, "redis"));
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?>
        {
            ["Conveyor:DatabaseUrl"] = redis.Url,
            ["Conveyor:Redis:KeyPrefix"] = "cvoutage-" + Guid.NewGuid().ToString("N"),
            // Information from Conveyor's own categories, to see the "again" lines; the framework stays at Warning.
            ["Logging:LogLevel:Conveyor"] = "Information",
        });
        var logs = new LogCapture();
        server.Service<ILoggerFactory>().AddProvider(logs);
        var id = await server.EnqueueAsync(new { task = "conveyor.noop", args = new { } });
        await server.WaitForStateAsync(id, "succeeded");
        Assert.Equal(HttpStatusCode.OK, (await GetReadyAsync(server.Client)).Status);

        await redis.KillAsync();

        // Readiness: 503 from the first probes on, each answered within the bound, and logged once.
        var probes = new List<TimeSpan>();
        await WaitUntilAsync(async () =>
        {
            var clock = Stopwatch.StartNew();
            var (status, _) = await GetReadyAsync(server.Client);
            probes.Add(clock.Elapsed);
            return status == HttpStatusCode.ServiceUnavailable;
        }, TimeSpan.FromSeconds(15), "/health/ready to report the Redis outage");
        for (var i = 0; i < 3; i++)
        {
            var clock = Stopwatch.StartNew();
            var (status, body) = await GetReadyAsync(server.Client);
            probes.Add(clock.Elapsed);
            Assert.True(status == HttpStatusCode.ServiceUnavailable, $"/health/ready answered {status} while Redis was down: {body}");
            Assert.Contains("redis", body, StringComparison.OrdinalIgnoreCase);
        }
        Assert.True(probes.TrueForAll(p => p < ProbeBound), $"readiness probes took {string.Join(", ", probes.Select(p => p.TotalSeconds.ToString("F2", System.Globalization.CultureInfo.InvariantCulture)))} s; each must answer within {ProbeBound.TotalSeconds} s");

        // The API: reads and an enqueue, concurrently (each waits out StackExchange.Redis's backlog timeout).
        var requests = Enumerable.Range(0, 4).Select(_ => server.Client.GetAsync($"/api/v1/tasks/{id}"))
            .Append(server.Client.GetAsync("/api/v1/queues"))
            .Append(server.PostJsonAsync("/api/v1/tasks", """{"task":"conveyor.noop","args":{}}"""))
            .ToList();
        foreach (var response in await Task.WhenAll(requests))
        {
            using (response)
            {
                var text = await response.Content.ReadAsStringAsync();
                Assert.True(response.StatusCode == HttpStatusCode.ServiceUnavailable, $"{response.RequestMessage?.RequestUri}: {(int)response.StatusCode} {text}");
                Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
                Assert.True(response.Headers.RetryAfter?.Delta is { TotalSeconds: > 0 }, $"Retry-After: {response.Headers.RetryAfter}");
                using var problem = JsonDocument.Parse(text);
                Assert.Equal(503, problem.RootElement.GetProperty("status").GetInt32());
                Assert.Equal("redis", problem.RootElement.GetProperty("backend").GetString());
            }
        }

        await redis.RestartAsync();
        await WaitUntilAsync(async () => (await GetReadyAsync(server.Client)).Status == HttpStatusCode.OK, TimeSpan.FromSeconds(30),
            "/health/ready to be healthy again after the restart");
        (await server.GetTaskAsync(id)).GetProperty("state").GetString();

        // Once each: the outage and its end, for the API and for readiness; no error per request or per probe.
        var entries = logs.Entries;
        var summary = string.Join("\n", entries.Select(e => $"{e.Level} {e.Category}[{e.EventId}] {e.Message}"));
        Assert.True(entries.Count(e => e.EventId == 6001 && e.Level == LogLevel.Warning) == 1, summary);
        Assert.True(entries.Count(e => e.EventId == 6002) == 1, summary);
        Assert.True(entries.Count(e => e.EventId == 6003 && e.Level == LogLevel.Warning) == 1, summary);
        Assert.True(entries.Count(e => e.EventId == 6004) == 1, summary);
        Assert.DoesNotContain(entries, e => e.Level >= LogLevel.Error);
        Assert.DoesNotContain(entries, e => e.Category.StartsWith("Microsoft.Extensions.Diagnostics.HealthChecks", StringComparison.Ordinal));
        Assert.DoesNotContain(entries, e => e.Category.StartsWith("Microsoft.AspNetCore.Diagnostics", StringComparison.Ordinal));
    }

    /// <summary>Keeps every log entry the server writes after it is added.</summary>
    private sealed class LogCapture : ILoggerProvider
    {
        private readonly ConcurrentQueue<Entry> _entries = new();

        public sealed record Entry(string Category, LogLevel Level, int EventId, string Message);

        public IReadOnlyList<Entry> Entries => [.. _entries];

        public ILogger CreateLogger(string categoryName) => new Logger(categoryName, _entries);

        public void Dispose()
        {
        }

        private sealed class Logger(string category, ConcurrentQueue<Entry> entries) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                entries.Enqueue(new Entry(category, logLevel, eventId.Id, formatter(state, exception)));
        }
    }
}
