using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Xunit.Abstractions;

namespace Conveyor.Server.Tests.Fuzzing;

/// <summary>
/// Issue 14, item 7: a real <c>conveyor server</c> process takes 100,000 generated hostile requests (every route of its
/// OpenAPI document with mutated parameters and bodies; malformed request lines, headers, framing, bodies and JSON) over
/// parallel keep-alive connections, and: answers none with a 5xx; answers every 4xx with problem details (except what
/// Kestrel refuses before the application runs, which it answers with an empty 4xx and closes); stays up; keeps its
/// resident memory bounded; and stores nothing that a 2xx answer did not report. The seed and count can be changed with
/// CONVEYOR_TEST_FUZZ_SEED and CONVEYOR_TEST_FUZZ_REQUESTS; a failure prints the request, which can be made again alone
/// from its index (<see cref="FuzzRequestGenerator.Generate"/>).
/// </summary>
[Collection(FuzzingCollection.Name)]
public sealed partial class ApiFuzzTests(ITestOutputHelper output) : IDisposable
{
    private const string Key = "fuzz-test-key-0123456789abcdef0123456789";
    private const int Connections = 16;
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(15);

    // Resident memory: the server's own start is ~100-150 MB; a leak per request (100,000 of them) or a body buffered
    // without a limit would pass this. Generous so that a slow CI machine's GC timing cannot fail it.
    private const long MaxResidentBytes = 768L * 1024 * 1024;

    private readonly string _folder = TempFolder.Create();

    public void Dispose() => TempFolder.Delete(_folder);

    [Fact]
    public async Task Hostile_requests_get_no_5xx_problem_details_for_every_4xx_bounded_memory_and_nothing_stored()
    {
        var seed = int.Parse(Environment.GetEnvironmentVariable("CONVEYOR_TEST_FUZZ_SEED") ?? "20261203", CultureInfo.InvariantCulture);
        var count = int.Parse(Environment.GetEnvironmentVariable("CONVEYOR_TEST_FUZZ_REQUESTS") ?? "100000", CultureInfo.InvariantCulture);
        var environment = new Dictionary<string, string>
        {
            ["DATABASE_URL"] = "sqlite:///" + Path.Combine(_folder, "fuzz.db"),
            ["LOG_LEVEL"] = "warning",
            ["CONVEYOR_API_KEYS"] = Key,
            // Nothing runs what the fuzzer stores: what is stored is only what the API itself wrote.
            ["CONVEYOR_RUN_SCHEDULER"] = "false",
            // The limits on wrong keys and on requests per address have their own tests (FailedAuthTests,
            // HttpHardeningTests); left on, they would answer nearly every fuzzed request 429 before it reached the API.
            ["CONVEYOR_FAILED_AUTH_LIMIT"] = "1000000",
            ["CONVEYOR_RATE_LIMIT__PERMITS_PER_SECOND"] = "0",
        };
        using var server = ConveyorProcess.Start(_folder, environment, "server", "--port", "0", "--no-worker");
        var line = await server.WaitForLineAsync(l => l.StartsWith("Conveyor serving http://127.0.0.1:", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        var baseAddress = new Uri(line["Conveyor serving ".Length..].Trim());
        using var http = new HttpClient { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(60) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);

        using var openApi = JsonDocument.Parse(await http.GetStringAsync("/openapi/v1.json"));
        var routes = FuzzRequestGenerator.RoutesFrom(openApi.RootElement);
        Assert.True(routes.Count >= 25, $"The OpenAPI document lists {routes.Count} operations");
        var generator = new FuzzRequestGenerator(routes, $"127.0.0.1:{baseAddress.Port}", Key, seed);
        var endpoint = new IPEndPoint(IPAddress.Loopback, baseAddress.Port);

        var stats = new ConcurrentDictionary<string, KindStats>(StringComparer.Ordinal);
        var routeHits = new ConcurrentDictionary<string, int>(StringComparer.Ordinal);
        var failures = new ConcurrentQueue<string>();
        var failureCount = 0;
        var accepted = new AcceptedResources();
        var peakResident = 0L;
        var next = -1;
        using var stop = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                if (ResidentBytes(server.Id) is { } rss)
                {
                    InterlockedMax(ref peakResident, rss);
                }
                await Task.Delay(200, CancellationToken.None);
            }
        });

        var clock = Stopwatch.StartNew();
        var residentAtStart = ResidentBytes(server.Id) ?? 0;
        var workers = Enumerable.Range(0, Connections).Select(_ => Task.Run(async () =>
        {
            RawHttpConnection? connection = null;
            try
            {
                while (Interlocked.Increment(ref next) is var index && index < count)
                {
                    var request = generator.Generate(index);
                    var kind = stats.GetOrAdd(request.Kind, _ => new KindStats());
                    Interlocked.Increment(ref kind.Sent);
                    routeHits.AddOrUpdate(request.Route, 1, (_, n) => n + 1);
                    RawResponse? response = null;
                    string? error = null;
                    try
                    {
                        connection ??= await RawHttpConnection.OpenAsync(endpoint, CancellationToken.None);
                        using var timeout = new CancellationTokenSource(RequestTimeout);
                        response = await connection.SendAsync(request, timeout.Token);
                    }
                    catch (Exception ex) when (ex is IOException or OperationCanceledException or System.Net.Sockets.SocketException)
                    {
                        error = ex.GetType().Name + ": " + ex.Message;
                    }
                    if (response is null || response.ServerClosed || request.ProtocolLevel || request.BodyMode == BodyMode.Truncated)
                    {
                        if (connection is not null)
                        {
                            await connection.DisposeAsync();
                        }
                        connection = null;
                    }
                    var problem = Check(request, response, error, kind);
                    if (problem is not null)
                    {
                        if (Interlocked.Increment(ref failureCount) <= 40)
                        {
                            failures.Enqueue($"#{index} [{request.Kind}] {problem}\n    request: {request.Describe()}");
                        }
                    }
                    else if (response is { Status: >= 200 and < 300 } && request.Method is not ("GET" or "HEAD" or "OPTIONS"))
                    {
                        accepted.Add(response.Body);
                    }
                }
            }
            finally
            {
                if (connection is not null)
                {
                    await connection.DisposeAsync();
                }
            }
        })).ToList();
        await Task.WhenAll(workers);
        clock.Stop();
        await stop.CancelAsync();
        await sampler;
        var residentAtEnd = ResidentBytes(server.Id) ?? 0;

        // The process is up and still answers.
        Assert.False(server.HasExited, $"conveyor exited during the fuzzing. Output: {server.Output} Error: {server.Error}");
        using (var live = await http.GetAsync("/health/live"))
        {
            Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        }

        var report = new StringBuilder();
        report.AppendLine(CultureInfo.InvariantCulture, $"seed {seed}: {count} requests over {Connections} connections in {clock.Elapsed.TotalSeconds:F1} s ({count / clock.Elapsed.TotalSeconds:F0}/s)");
        report.AppendLine("kind | sent | 2xx | 4xx problem | 4xx refused by Kestrel | closed without answer | failures");
        foreach (var (name, kind) in stats.OrderBy(s => s.Key, StringComparer.Ordinal))
        {
            report.AppendLine(CultureInfo.InvariantCulture, $"{name} | {kind.Sent} | {kind.Success} | {kind.Problem} | {kind.Refused} | {kind.NoAnswer} | {kind.Failed}");
        }
        report.AppendLine(CultureInfo.InvariantCulture, $"statuses: {string.Join(", ", stats.Values.SelectMany(s => s.Statuses).GroupBy(p => p.Key).OrderBy(g => g.Key).Select(g => $"{g.Key}: {g.Sum(p => p.Value)}"))}");
        report.AppendLine(CultureInfo.InvariantCulture, $"resident memory: {residentAtStart / 1048576} MB at start, peak {peakResident / 1048576} MB, {residentAtEnd / 1048576} MB at end");
        // What is stored is what 2xx answers reported: every task, workflow and schedule.
        List<string> storedTasks, storedWorkflows, storedSchedules;
        try
        {
            storedTasks = await ListIdsAsync(http, "/api/v1/tasks", "id");
            storedWorkflows = await ListIdsAsync(http, "/api/v1/workflows", "id");
            storedSchedules = await ListSchedulesAsync(http);
        }
        catch (HttpRequestException ex)
        {
            Assert.Fail($"Listing what the fuzzing stored failed: {ex.Message}\n{report}\n{string.Join("\n", failures)}\nServer output: {Tail(server.Output)}\nServer errors: {Tail(server.Error)}");
            throw;
        }
        var unexplained = storedTasks.Where(id => !accepted.Contains(id))
            .Concat(storedWorkflows.Where(id => !accepted.Contains(id)))
            .Concat(storedSchedules.Where(name => !accepted.ContainsName(name)))
            .ToList();

        report.AppendLine(CultureInfo.InvariantCulture, $"stored: {storedTasks.Count} tasks, {storedWorkflows.Count} workflows, {storedSchedules.Count} schedules; all reported by 2xx answers: {unexplained.Count == 0}");
        var missing = routes.Where(r => !routeHits.ContainsKey(r.Key)).Select(r => r.Key).ToList();
        report.AppendLine(CultureInfo.InvariantCulture, $"routes of the OpenAPI document: {routes.Count}, each sent at least {routes.Min(r => routeHits.GetValueOrDefault(r.Key))} requests");
        output.WriteLine(report.ToString());

        Assert.True(failureCount == 0, $"{failureCount} answers broke the rules:\n{string.Join("\n", failures)}\n\n{report}\nServer failures: {ServerFailures(server.Output)}\nServer errors: {Tail(server.Error)}");
        Assert.Empty(missing);
        if (unexplained.Count > 0)
        {
            var shown = new List<string>();
            foreach (var id in unexplained.Take(5))
            {
                using var found = await http.GetAsync(Guid.TryParse(id, out _) ? $"/api/v1/tasks/{id}" : $"/api/v1/schedules/{id}");
                shown.Add($"{id}: {(int)found.StatusCode} {await found.Content.ReadAsStringAsync()}");
            }
            Assert.Fail($"{unexplained.Count} stored but never reported by a 2xx answer:\n{string.Join("\n", shown)}");
        }
        Assert.True(peakResident < MaxResidentBytes, $"Resident memory peaked at {peakResident / 1048576} MB\n{report}");
        // Every kind was sent (the weights reach each one at this count).
        Assert.Equal(FuzzRequestGenerator.Kinds.Count, stats.Count);
    }

    /// <summary>Null when the answer keeps the rules; otherwise what is wrong.</summary>
    private static string? Check(FuzzRequest request, RawResponse? response, string? error, KindStats kind)
    {
        if (response is null)
        {
            Interlocked.Increment(ref kind.NoAnswer);
            if (request.ProtocolLevel || request.BodyMode == BodyMode.Truncated)
            {
                // Kestrel may drop a connection whose bytes it cannot frame.
                return null;
            }
            Interlocked.Increment(ref kind.Failed);
            return "no answer: " + error;
        }
        kind.Statuses.AddOrUpdate(response.Status, 1, (_, n) => n + 1);
        if (response.Body.Length == 0 && response.ServerClosed && response.Status is 400 or 413 or 414 or 431
            || (response.Status == 505 && request.ProtocolLevel))
        {
            // Refused by Kestrel while parsing the request (an empty answer, then it closes the connection), before any
            // middleware runs: there is no place for problem details, and nothing reached the API. 505 is Kestrel's answer
            // to a request line of another HTTP version (HTTP/2.0 over HTTP/1.1), not a server error.
            Interlocked.Increment(ref kind.Refused);
            return null;
        }
        if (response.Status >= 500)
        {
            Interlocked.Increment(ref kind.Failed);
            return $"{response.Status}: {Text(response.Body)}";
        }
        if (response.Status < 400)
        {
            if (request.Kind == "path-traversal" && LeakedFile(response.Body) is { } leaked)
            {
                Interlocked.Increment(ref kind.Failed);
                return $"{response.Status} with the content of a file outside the dashboard's assets ({leaked})";
            }
            Interlocked.Increment(ref kind.Success);
            return null;
        }
        if (ProblemDetails(response, head: request.Method == "HEAD") is { } wrong)
        {
            Interlocked.Increment(ref kind.Failed);
            return $"{response.Status} without problem details ({wrong}): Content-Type '{response.Header("Content-Type")}', body '{Text(response.Body)}'";
        }
        Interlocked.Increment(ref kind.Problem);
        return null;
    }

    /// <summary>What a traversal that escaped the dashboard's assets would show: the marker of the file it read.</summary>
    private static string? LeakedFile(byte[] body)
    {
        var text = Encoding.Latin1.GetString(body, 0, Math.Min(body.Length, 64 * 1024));
        string[] markers = ["root:x:0:0", "SQLite format 3", "[core]", "\"runtimeTarget\"", "ConnectionStrings", "DATABASE_URL="];
        if (body.Length >= 2 && body[0] == 'M' && body[1] == 'Z')
        {
            return "an executable";
        }
        return markers.FirstOrDefault(m => text.Contains(m, StringComparison.Ordinal));
    }

    private static string? ProblemDetails(RawResponse response, bool head)
    {
        if (!response.Header("Content-Type").StartsWith("application/problem+json", StringComparison.OrdinalIgnoreCase))
        {
            return "not application/problem+json";
        }
        if (head)
        {
            // An answer to HEAD has the headers of the answer to GET, without its body.
            return null;
        }
        try
        {
            using var document = JsonDocument.Parse(response.Body);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("title", out _))
            {
                return "no title";
            }
            if (!root.TryGetProperty("status", out var status) || status.GetInt32() != response.Status)
            {
                return "status member missing or different";
            }
            return null;
        }
        catch (JsonException ex)
        {
            return "not JSON: " + ex.Message;
        }
    }

    /// <summary>The ids of every item of a listing; for a task of a workflow, the workflow's id.</summary>
    private static async Task<List<string>> ListIdsAsync(HttpClient http, string path, string idProperty)
    {
        var ids = new List<string>();
        string? cursor = null;
        do
        {
            var url = path + "?limit=1000" + (cursor is null ? "" : "&cursor=" + Uri.EscapeDataString(cursor));
            using var document = JsonDocument.Parse(await http.GetStringAsync(url));
            foreach (var item in document.RootElement.GetProperty("items").EnumerateArray())
            {
                // A workflow's 201 answer gives the workflow's id; its steps' tasks carry it in a header.
                var workflow = item.TryGetProperty("headers", out var headers) && headers.ValueKind == JsonValueKind.Object
                    && headers.TryGetProperty("conveyor-workflow", out var owner) ? owner.GetString() : null;
                ids.Add(workflow?.ToLowerInvariant() ?? item.GetProperty(idProperty).GetString()!.ToLowerInvariant());
            }
            cursor = document.RootElement.TryGetProperty("nextCursor", out var next) && next.ValueKind == JsonValueKind.String ? next.GetString() : null;
        }
        while (cursor is not null);
        return ids;
    }

    private static async Task<List<string>> ListSchedulesAsync(HttpClient http)
    {
        using var document = JsonDocument.Parse(await http.GetStringAsync("/api/v1/schedules"));
        return document.RootElement.EnumerateArray().Select(s => s.GetProperty("name").GetString()!).ToList();
    }

    private static long? ResidentBytes(int processId)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{processId}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    return long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
                }
            }
        }
        catch (IOException)
        {
        }
        return null;
    }

    private static void InterlockedMax(ref long target, long value)
    {
        long current;
        while ((current = Interlocked.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, current) != current)
        {
        }
    }

    private static string Text(byte[] body) => Encoding.UTF8.GetString(body, 0, Math.Min(body.Length, 400));

    /// <summary>The server's logged failures (an exception behind a 500), each cut short.</summary>
    private static string ServerFailures(string log) =>
        string.Join("\n", log.Split('\n').Where(l => l.Contains(" fail: ", StringComparison.Ordinal) || l.Contains(" crit: ", StringComparison.Ordinal))
            .Take(5).Select(l => l.Length > 2000 ? l[..2000] : l));

    private static string Tail(string text) => text.Length > 4000 ? text[^4000..] : text;

    private sealed class KindStats
    {
        public int Sent;
        public int Success;
        public int Problem;
        public int Refused;
        public int NoAnswer;
        public int Failed;
        public readonly ConcurrentDictionary<int, int> Statuses = new();
    }

    /// <summary>Ids (UUIDs) and names in the bodies of 2xx answers to state-changing requests: what the API said it stored.</summary>
    private sealed partial class AcceptedResources
    {
        private readonly ConcurrentDictionary<string, bool> _ids = new(StringComparer.Ordinal);
        private readonly ConcurrentDictionary<string, bool> _names = new(StringComparer.Ordinal);

        public void Add(byte[] body)
        {
            var text = Encoding.UTF8.GetString(body);
            foreach (Match match in UuidPattern().Matches(text))
            {
                _ids.TryAdd(match.Value.ToLowerInvariant(), true);
            }
            if (body.Length == 0)
            {
                return;
            }
            try
            {
                using var document = JsonDocument.Parse(body);
                if (document.RootElement.ValueKind == JsonValueKind.Object && document.RootElement.TryGetProperty("name", out var name) && name.ValueKind == JsonValueKind.String)
                {
                    _names.TryAdd(name.GetString()!, true);
                }
            }
            catch (JsonException)
            {
            }
        }

        public bool Contains(string id) => _ids.ContainsKey(id);

        public bool ContainsName(string name) => _names.ContainsKey(name);

        [GeneratedRegex("[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")]
        private static partial Regex UuidPattern();
    }
}

/// <summary>The fuzzer runs alone, after the tests that run in parallel: its 16 busy connections would slow their
/// deadlines, and their work would blur its memory figures.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class FuzzingCollection
{
    public const string Name = "Fuzzing";
}
