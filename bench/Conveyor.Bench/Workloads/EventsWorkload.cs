using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Conveyor.Bench.Infrastructure;
using Conveyor.Bench.Results;
using Conveyor.Bench.Systems;

namespace Conveyor.Bench.Workloads;

/// <summary>
/// <c>events</c>: from a task's state change to its server-sent event at a client. A <c>conveyor server</c> child process
/// (worker in-process, as deployed by default) runs no-op tasks posted over HTTP at the paced rate (default 1,000/s); one
/// client reads <c>GET /api/v1/events</c> on its own connection. Each event's latency is its arrival at the client (wall
/// clock, read as its <c>data:</c> line is parsed) minus its <c>at</c> (the server's wall clock when the change happened,
/// with sub-millisecond digits): the same clock, on one machine. Every event of the measured window counts: enqueued, started
/// and succeeded, three a task.
/// </summary>
internal sealed class EventsWorkload(BenchBackend backend = BenchBackend.Sqlite) : IWorkload
{
    public const double DefaultRate = 1000;
    private static readonly MediaTypeHeaderValue Json = new("application/json");

    public string Name => "events";

    public string Title => $"Task events over SSE (conveyor server, {StoreTarget.DisplayName(backend)}, worker in-process, one client)";

    public string Note =>
        "Latency is the event's arrival at the client minus its `at` (the server's clock at the change; the same wall clock on one machine); " +
        "enqueued, started and succeeded events alike. Events/s is what the client received in the measured window. " +
        $"Tasks are posted over HTTP at {DefaultRate:0}/s unless --rate is given; 1 s of unrecorded sending precedes the window.";

    public IEnumerable<BenchCase> Cases(BenchSettings settings)
    {
        var target = backend == BenchBackend.Sqlite ? new StoreTarget(BenchBackend.Sqlite, settings.Synchronous[0]) : new StoreTarget(backend);
        var key = new CaseKey(Name, BenchSystem.Conveyor, $"server, {target.ConveyorVariant}");
        yield return settings.ServerProblem() is { } problem
            ? BenchCase.Skip(key, problem)
            : new BenchCase(key, (s, ct) => RunAsync(s, target, ct)) { Warmup = false };
    }

    private static async Task<IReadOnlyList<Metric>> RunAsync(BenchSettings settings, StoreTarget target, CancellationToken ct)
    {
        var s = settings.RateGiven ? settings : settings with { Rate = DefaultRate };
        using var dir = new TempDirectory("events");
        var (store, cleanup) = target.ForServer(s, dir);
        try
        {
            using var server = await ConveyorServer.StartAsync(s, store, dir, ct);
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var reader = new EventReader();
            var reading = reader.ReadAsync(server.BaseAddress, stop.Token);
            await reader.Connected.WaitAsync(TimeSpan.FromSeconds(30), ct);

            var warm = LatencyWorkload.Count(s, TimeSpan.FromSeconds(1));
            var measured = LatencyWorkload.Count(s, s.Duration);
            await SendPacedAsync(server, s, warm, ct);
            var windowStart = DateTimeOffset.UtcNow;
            var clock = Stopwatch.StartNew();
            await SendPacedAsync(server, s, measured, ct);
            var windowEnd = DateTimeOffset.UtcNow;
            var window = clock.Elapsed;

            await Wait.UntilAsync(() => reader.Succeeded >= warm + measured || reader.Failure is not null || reading.IsCompleted,
                TimeSpan.FromMilliseconds(20), TimeSpan.FromSeconds(120), "the client to receive every task's succeeded event", ct);
            await stop.CancelAsync();
            try
            {
                await reading;
            }
            catch (OperationCanceledException)
            {
            }
            if (reader.Failure is { } failure)
            {
                throw new InvalidOperationException(failure);
            }
            await server.WaitAllSucceededAsync(warm + measured, ct);
            var samples = reader.Samples.Where(x => x.At >= windowStart && x.At <= windowEnd).Select(x => x.LatencyMs).ToList();
            if (samples.Count < measured)
            {
                throw new InvalidOperationException($"The client received {samples.Count} events in the window for {measured} tasks.");
            }
            var label = $"event latency at {s.Rate:0} tasks/s";
            return
            [
                new Metric($"{label}, p50", "ms", false, Percentiles.Of(samples, 50)),
                new Metric($"{label}, p95", "ms", false, Percentiles.Of(samples, 95)),
                new Metric($"{label}, p99", "ms", false, Percentiles.Of(samples, 99)),
                new Metric($"events received at {s.Rate:0} tasks/s", "events/s", true, samples.Count / window.TotalSeconds),
            ];
        }
        finally
        {
            await cleanup();
        }
    }

    private static async Task SendPacedAsync(ConveyorServer server, BenchSettings s, int count, CancellationToken ct)
    {
        var pacer = new Pacer(s.Rate);
        var body = Encoding.UTF8.GetBytes($$$"""{"task":"{{{NoopTask.Name}}}","args":{}}""");
        var pending = new List<Task>(count);
        for (var i = 0; i < count; i++)
        {
            await pacer.WaitForAsync(i, ct);
            pending.Add(PostAsync(server, body, ct));
        }
        await Task.WhenAll(pending);
    }

    private static async Task PostAsync(ConveyorServer server, byte[] body, CancellationToken ct)
    {
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = Json;
        using var response = await server.Http.PostAsync("api/v1/tasks", content, ct);
        if (response.StatusCode != HttpStatusCode.Created)
        {
            throw new InvalidOperationException($"POST /api/v1/tasks answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(ct)}");
        }
    }

    /// <summary>Reads the event stream on a connection of its own and keeps, per event, its <c>at</c> and its latency.</summary>
    private sealed class EventReader
    {
        private readonly Lock _gate = new();
        private readonly List<(DateTimeOffset At, double LatencyMs)> _samples = new(100_000);
        private readonly TaskCompletionSource _connected = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _succeeded;

        public Task Connected => _connected.Task;

        public int Succeeded => Volatile.Read(ref _succeeded);

        public string? Failure { get; private set; }

        public List<(DateTimeOffset At, double LatencyMs)> Samples
        {
            get
            {
                lock (_gate)
                {
                    return [.. _samples];
                }
            }
        }

        public async Task ReadAsync(Uri baseAddress, CancellationToken ct)
        {
            using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { BaseAddress = baseAddress, Timeout = Timeout.InfiniteTimeSpan };
            using var request = new HttpRequestMessage(HttpMethod.Get, "api/v1/events");
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
            if (response.StatusCode != HttpStatusCode.OK)
            {
                Failure = $"GET /api/v1/events answered {(int)response.StatusCode}";
                _connected.TrySetResult();
                return;
            }
            _connected.TrySetResult();
            await using var stream = await response.Content.ReadAsStreamAsync(ct);
            using var reader = new StreamReader(stream);
            string? eventName = null;
            while (await reader.ReadLineAsync(ct) is { } line)
            {
                if (line.StartsWith("event: ", StringComparison.Ordinal))
                {
                    eventName = line[7..];
                }
                else if (line.StartsWith("data: ", StringComparison.Ordinal))
                {
                    var arrived = DateTimeOffset.UtcNow;
                    if (eventName == "overflow")
                    {
                        Failure = "The client fell behind and was sent event: overflow: " + line;
                        return;
                    }
                    using var document = JsonDocument.Parse(line.AsMemory(6));
                    var at = document.RootElement.GetProperty("at").GetDateTimeOffset();
                    lock (_gate)
                    {
                        _samples.Add((at, (arrived - at).TotalMilliseconds));
                    }
                    if (document.RootElement.GetProperty("type").ValueEquals("succeeded"u8))
                    {
                        Interlocked.Increment(ref _succeeded);
                    }
                }
                else if (line.Length == 0)
                {
                    eventName = null;
                }
            }
            Failure ??= "The server ended the event stream.";
        }
    }
}
