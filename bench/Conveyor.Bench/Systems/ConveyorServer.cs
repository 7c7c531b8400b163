using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Conveyor.Bench.Infrastructure;
using Conveyor.Sqlite;

namespace Conveyor.Bench.Systems;

/// <summary>
/// The <c>conveyor</c> executable (src/Conveyor.Server) run as a child process, as deployed:
/// <c>conveyor server</c> (or <c>dotnet Conveyor.Server.dll server</c>) with <c>HOST</c>, <c>PORT</c> and
/// <c>DATABASE_URL</c> set, on a free loopback port and a fresh SQLite file. It runs a worker in-process by default.
/// </summary>
internal sealed class ConveyorServer : IDisposable
{
    private static readonly string[] StateNames = ["scheduled", "queued", "running", "succeeded", "retrying", "dead", "cancelled", "expired"];
    private readonly ChildProcess _process;

    private ConveyorServer(ChildProcess process, Uri baseAddress, int connections)
    {
        _process = process;
        BaseAddress = baseAddress;
        Http = new HttpClient(new SocketsHttpHandler
        {
            // HTTP/1.1 keep-alive: one pooled connection per concurrent caller, never recycled during a run.
            MaxConnectionsPerServer = connections,
            PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
            UseProxy = false,
            AutomaticDecompression = DecompressionMethods.None,
        })
        {
            BaseAddress = baseAddress,
            DefaultRequestVersion = HttpVersion.Version11,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Timeout = TimeSpan.FromSeconds(30),
        };
    }

    public Uri BaseAddress { get; }

    public HttpClient Http { get; }

    public int ProcessId => _process.Id;

    /// <summary>The environment the <c>conveyor</c> executable reads: listen address, database (SQLAlchemy's
    /// convention, four slashes before an absolute path, <c>?synchronous=</c> for durability) and worker concurrency.</summary>
    public static Dictionary<string, string> Environment(string databasePath, SqliteSynchronous synchronous, int workers, int? port, int? prefetch = null) =>
        Environment(new Dictionary<string, string>
        {
            ["DATABASE_URL"] = $"sqlite:///{Path.GetFullPath(databasePath)}?synchronous={synchronous.ToString().ToLowerInvariant()}",
        }, workers, port, prefetch);

    /// <summary>The same, with the store's variables (<see cref="StoreTarget.ForServer"/>) instead of a SQLite file.</summary>
    public static Dictionary<string, string> Environment(IReadOnlyDictionary<string, string> store, int workers, int? port, int? prefetch = null)
    {
        var environment = new Dictionary<string, string>(store)
        {
            ["HOST"] = "127.0.0.1",
            ["CONVEYOR_WORKER__CONCURRENCY"] = workers.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["LOG_LEVEL"] = "Warning",
            ["DOTNET_ENVIRONMENT"] = "Production",
            ["ASPNETCORE_ENVIRONMENT"] = "Production",
        };
        if (prefetch is { } f)
        {
            environment["CONVEYOR_WORKER__PREFETCH"] = f.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        if (port is { } p)
        {
            environment["PORT"] = p.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        return environment;
    }

    /// <summary>Starts the server and waits until <c>/health/ready</c> (or, lacking it, <c>/health/live</c>) answers 200.</summary>
    public static async Task<ConveyorServer> StartAsync(BenchSettings s, IReadOnlyDictionary<string, string> store, TempDirectory dir, CancellationToken ct)
    {
        var program = s.Server ?? throw new InvalidOperationException("--server is required");
        var port = ChildProcess.FreePort();
        var process = ChildProcess.Start(program, s.ServerCommand.Split(' ', StringSplitOptions.RemoveEmptyEntries),
            Environment(store, s.Workers, port, s.Prefetch), dir.Path);
        var server = new ConveyorServer(process, new Uri($"http://127.0.0.1:{port}/"), s.Concurrency);
        try
        {
            await server.WaitReadyAsync(TimeSpan.FromSeconds(60), ct);
            return server;
        }
        catch
        {
            server.Dispose();
            throw;
        }
    }

    private async Task WaitReadyAsync(TimeSpan timeout, CancellationToken ct)
    {
        var start = Stopwatch.GetTimestamp();
        while (true)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"The conveyor server exited before it was ready. Its last output:{System.Environment.NewLine}{_process.Output}");
            }
            foreach (var path in (string[])["health/ready", "health/live"])
            {
                try
                {
                    using var response = await Http.GetAsync(path, ct);
                    if (response.StatusCode == HttpStatusCode.OK)
                    {
                        return;
                    }
                }
                catch (HttpRequestException)
                {
                    // Not listening yet.
                }
            }
            if (Stopwatch.GetElapsedTime(start) > timeout)
            {
                throw new TimeoutException($"The conveyor server was not ready after {timeout.TotalSeconds:0} s. Its last output:{System.Environment.NewLine}{_process.Output}");
            }
            await Task.Delay(100, ct);
        }
    }

    /// <summary>Counts per state of the <c>default</c> queue, from <c>GET /api/v1/queues?exact=true</c> (servers before
    /// the flag ignore it and count exactly anyway).</summary>
    public async Task<Dictionary<string, long>> QueueCountsAsync(CancellationToken ct)
    {
        using var document = await Http.GetFromJsonAsync<JsonDocument>("api/v1/queues?exact=true", ct)
            ?? throw new InvalidOperationException("GET /api/v1/queues returned no body.");
        var counts = StateNames.ToDictionary(n => n, _ => 0L);
        foreach (var queue in document.RootElement.EnumerateArray())
        {
            if (queue.GetProperty("name").GetString() != QueueNames.Default)
            {
                continue;
            }
            foreach (var state in StateNames)
            {
                if (queue.TryGetProperty(state, out var value) && value.ValueKind == JsonValueKind.Number)
                {
                    counts[state] = value.GetInt64();
                }
            }
        }
        return counts;
    }

    /// <summary>Waits until the store reports <paramref name="total"/> tasks in the default queue, all succeeded.</summary>
    public async Task WaitAllSucceededAsync(long total, CancellationToken ct)
    {
        Dictionary<string, long>? last = null;
        try
        {
            await Wait.UntilAsync(async () =>
            {
                last = await QueueCountsAsync(ct);
                return last["succeeded"] >= total;
            }, TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(120), $"the server's store to record {total} tasks succeeded", ct);
        }
        catch (TimeoutException ex) when (last is not null)
        {
            throw new TimeoutException($"{ex.Message} Last counts: {string.Join(", ", last.Select(kv => $"{kv.Key}={kv.Value}"))}", ex);
        }
    }

    public void Dispose()
    {
        Http.Dispose();
        _process.Dispose();
    }
}
