using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Conveyor.Bench.Infrastructure;
using Conveyor.Bench.Results;
using Conveyor.Bench.Systems;

namespace Conveyor.Bench.Workloads;

/// <summary>
/// Through the HTTP server (<c>conveyor server</c> as a child process, worker in-process, SQLite):
/// enqueue throughput one task per request from <c>--concurrency</c> keep-alive HTTP/1.1
/// connections, and enqueue-to-start latency at <c>--rate</c>. Hangfire has no HTTP enqueue API,
/// so these figures have no Hangfire counterpart.
/// </summary>
internal sealed class HttpWorkload(BenchBackend backend = BenchBackend.Sqlite) : IWorkload
{
    private static readonly MediaTypeHeaderValue Json = new("application/json");
    private static readonly byte[] NoopBody = Encoding.UTF8.GetBytes($$$"""{"task":"{{{NoopTask.Name}}}","args":{}}""");

    public string Name => "http";

    public string Title => $"Through the HTTP server (conveyor server, {StoreTarget.DisplayName(backend)}, worker in-process)";

    public string Note =>
        "Client and server share the machine. Enqueue runs while the server's own worker drains. " +
        "Latency is the server's startedAt (set at lease, stored in whole ms) minus the client's clock before the POST: 1 ms resolution. Hangfire has no HTTP API.";

    public IEnumerable<BenchCase> Cases(BenchSettings settings)
    {
        IEnumerable<StoreTarget> targets = backend == BenchBackend.Sqlite
            ? settings.Synchronous.Select(x => new StoreTarget(BenchBackend.Sqlite, x))
            : [new StoreTarget(backend)];
        foreach (var target in targets)
        {
            var key = new CaseKey(Name, BenchSystem.Conveyor, $"server, {target.ConveyorVariant}");
            // Each run starts a fresh server process, which warms itself up; the global warm-up would not help it.
            yield return settings.ServerProblem() is { } problem
                ? BenchCase.Skip(key, problem)
                : new BenchCase(key, (s, ct) => RunAsync(s, target, ct)) { Warmup = false };
        }
    }

    private static async Task<IReadOnlyList<Metric>> RunAsync(BenchSettings s, StoreTarget target, CancellationToken ct)
    {
        using var dir = new TempDirectory("http");
        var (store, cleanup) = target.ForServer(s, dir);
        try
        {
            return await RunAsync(s, store, dir, ct);
        }
        finally
        {
            await cleanup();
        }
    }

    private static async Task<IReadOnlyList<Metric>> RunAsync(BenchSettings s, Dictionary<string, string> store, TempDirectory dir, CancellationToken ct)
    {
        using var server = await ConveyorServer.StartAsync(s, store, dir, ct);
        long total = 0;

        // Warm-up: the server process is new, so JIT its hot paths before the clock runs.
        var warmup = s.ForWarmup();
        total += await EnqueueAsync(server, warmup, ct);
        var start = Stopwatch.GetTimestamp();
        var accepted = await EnqueueAsync(server, s, ct);
        var elapsed = Stopwatch.GetElapsedTime(start);
        total += accepted;
        // Honest count: every 201 must be a task the store holds; the in-process worker runs them all.
        await server.WaitAllSucceededAsync(total, ct);
        var counts = await server.QueueCountsAsync(ct);
        var held = counts.Values.Sum();
        if (held != total)
        {
            throw new InvalidOperationException($"The server answered 201 to {total} enqueues, its store holds {held} tasks.");
        }

        var samples = await LatencyAsync(server, s, ct);
        return
        [
            new Metric($"HTTP enqueue, one per request, {s.Concurrency} connections", "tasks/s", true, accepted / elapsed.TotalSeconds),
            .. LatencyWorkload.Summarise(s, samples, "HTTP "),
        ];
    }

    /// <summary>Sends up to <c>--tasks</c> enqueues (or for <c>--time-limit</c>) from <c>--concurrency</c>
    /// callers, each awaiting its response before the next; returns how many were answered 201.</summary>
    private static async Task<long> EnqueueAsync(ConveyorServer server, BenchSettings s, CancellationToken ct)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(s.TimeLimit.TotalSeconds * Stopwatch.Frequency);
        var claimed = 0;
        long accepted = 0;
        var callers = Enumerable.Range(0, s.Concurrency).Select(_ => Task.Run(async () =>
        {
            while (Interlocked.Increment(ref claimed) <= s.Tasks && Stopwatch.GetTimestamp() < deadline)
            {
                using var response = await PostAsync(server, NoopBody, ct);
                Interlocked.Increment(ref accepted);
            }
        }, ct));
        await Task.WhenAll(callers);
        return accepted;
    }

    private static async Task<HttpResponseMessage> PostAsync(ConveyorServer server, byte[] body, CancellationToken ct)
    {
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = Json;
        var response = await server.Http.PostAsync("api/v1/tasks", content, ct);
        if (response.StatusCode != HttpStatusCode.Created)
        {
            var text = await response.Content.ReadAsStringAsync(ct);
            response.Dispose();
            throw new InvalidOperationException($"POST /api/v1/tasks answered {(int)response.StatusCode}: {text}");
        }
        return response;
    }

    /// <summary>
    /// Paced enqueues over HTTP; each sample is the task's <c>startedAt</c> (recorded by the server when
    /// its worker leases it, in whole milliseconds) minus the wall-clock time just before its POST,
    /// truncated to the millisecond the same way. Resolution is therefore 1 ms.
    /// </summary>
    private static async Task<IReadOnlyList<double>> LatencyAsync(ConveyorServer server, BenchSettings s, CancellationToken ct)
    {
        var before = (await server.QueueCountsAsync(ct))["succeeded"];
        _ = await SendPacedAsync(server, s, LatencyWorkload.Count(s, TimeSpan.FromSeconds(1)), ct);
        var sent = await SendPacedAsync(server, s, LatencyWorkload.Count(s, s.Duration), ct);
        await server.WaitAllSucceededAsync(before + LatencyWorkload.Count(s, TimeSpan.FromSeconds(1)) + sent.Count, ct);

        var samples = new double[sent.Count];
        var next = -1;
        var readers = Enumerable.Range(0, s.Concurrency).Select(_ => Task.Run(async () =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < sent.Count)
            {
                var (id, sentAtMs) = sent[i];
                using var task = await server.Http.GetFromJsonAsync<JsonDocument>($"api/v1/tasks/{id}", ct)
                    ?? throw new InvalidOperationException($"GET /api/v1/tasks/{id} returned no body.");
                var startedAt = task.RootElement.TryGetProperty("startedAt", out var value) && value.ValueKind == JsonValueKind.String
                    ? value.GetDateTimeOffset()
                    : throw new InvalidOperationException($"GET /api/v1/tasks/{id} has no startedAt: {task.RootElement}");
                samples[i] = startedAt.ToUnixTimeMilliseconds() - sentAtMs;
            }
        }, ct));
        await Task.WhenAll(readers);
        return samples;
    }

    private static async Task<List<(string Id, long SentAtMs)>> SendPacedAsync(ConveyorServer server, BenchSettings s, int count, CancellationToken ct)
    {
        var pacer = new Pacer(s.Rate);
        var pending = new List<(Task<HttpResponseMessage> Response, long SentAtMs)>(count);
        for (var i = 0; i < count; i++)
        {
            await pacer.WaitForAsync(i, ct);
            var sentAtMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            var body = Encoding.UTF8.GetBytes($$$"""{"task":"{{{NoopTask.Name}}}","args":{"sentAtMs":{{{sentAtMs}}}}}""");
            pending.Add((PostAsync(server, body, ct), sentAtMs));
        }
        var result = new List<(string, long)>(count);
        foreach (var (responseTask, sentAtMs) in pending)
        {
            using var response = await responseTask;
            using var body = await response.Content.ReadFromJsonAsync<JsonDocument>(ct)
                ?? throw new InvalidOperationException("POST /api/v1/tasks returned no body.");
            result.Add((body.RootElement.GetProperty("id").GetString()!, sentAtMs));
        }
        return result;
    }
}
