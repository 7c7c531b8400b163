using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Conveyor.Server.Tests;

namespace Conveyor.Dashboard.Tests;

/// <summary>A real <c>conveyor server</c> process on a free loopback port with SQLite in a temporary folder, and an HTTP
/// client for its API. Its worker consumes <see cref="WorkerQueues"/>; tasks in other queues stay queued.</summary>
public sealed class DashboardServer : IAsyncDisposable
{
    public const string WorkerQueues = "default,failing,bulk,pausable,workflows,workflows-gated";

    private readonly Dictionary<string, string> _environment;

    private DashboardServer(string folder, Dictionary<string, string> environment)
    {
        Folder = folder;
        _environment = environment;
    }

    public string Folder { get; }
    public ConveyorProcess Process { get; private set; } = null!;
    public Uri BaseAddress { get; private set; } = null!;
    public HttpClient Client { get; private set; } = null!;
    public string? ApiKey { get; private init; }

    public static async Task<DashboardServer> StartAsync(string? apiKey = null, int port = 0, string? folder = null)
    {
        folder ??= Directory.CreateTempSubdirectory("conveyor-dashboard-tests-").FullName;
        var environment = new Dictionary<string, string>
        {
            ["HOST"] = "127.0.0.1",
            ["PORT"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["DATABASE_URL"] = "sqlite:///" + Path.Combine(folder, "conveyor.db"),
            ["CONVEYOR_WORKER__QUEUES"] = WorkerQueues,
            // Running tasks reach the workers list with the worker's heartbeat (10 s by default).
            ["CONVEYOR_WORKER__HEARTBEAT_INTERVAL"] = "00:00:02",
            ["CONVEYOR_HTTP__ALLOWED_HOSTS"] = "127.0.0.1",
            ["CONVEYOR_LIMITS__0__TASK"] = "http.request",
            ["CONVEYOR_LIMITS__0__RATE"] = "100/s",
            ["CONVEYOR_LIMITS__0__CONCURRENCY"] = "4",
            ["LOG_LEVEL"] = "Warning",
        };
        if (apiKey is not null)
        {
            environment["CONVEYOR_API_KEYS"] = apiKey;
        }
        var server = new DashboardServer(folder, environment) { ApiKey = apiKey };
        await server.RunAsync();
        return server;
    }

    private async Task RunAsync()
    {
        Process = ConveyorProcess.Start(Folder, _environment, "server");
        var line = await Process.WaitForLineAsync(l => l.StartsWith("Conveyor serving ", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        BaseAddress = new Uri(line["Conveyor serving ".Length..].Trim().Split(' ')[0].TrimEnd('/') + "/");
        Client?.Dispose();
        Client = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(30) };
        if (ApiKey is not null)
        {
            Client.DefaultRequestHeaders.Authorization = new("Bearer", ApiKey);
        }
    }

    /// <summary>Kills the process (SIGKILL) and starts it again on the same port and database.</summary>
    public void Kill() => Process.KillHard();

    public async Task RestartAsync()
    {
        Process.Dispose();
        _environment["PORT"] = BaseAddress.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        await RunAsync();
    }

    public async Task<JsonElement> PostAsync(string path, string json, System.Net.HttpStatusCode expected = System.Net.HttpStatusCode.Created)
    {
        using var response = await Client.PostAsync(path.TrimStart('/'), new StringContent(json, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, $"POST {path}: {(int)response.StatusCode} {text}");
        using var document = JsonDocument.Parse(text);
        return document.RootElement.Clone();
    }

    public async Task<string> EnqueueAsync(string task, object? args = null, string queue = "default", int? maxAttempts = null)
    {
        var body = new Dictionary<string, object?> { ["task"] = task, ["args"] = args ?? new { }, ["queue"] = queue };
        if (maxAttempts is { } attempts)
        {
            body["maxAttempts"] = attempts;
        }
        var created = await PostAsync("api/v1/tasks", JsonSerializer.Serialize(body));
        return created.GetProperty("id").GetString()!;
    }

    /// <summary>A task that fails for good at its first attempt (connection refused), in a queue the worker consumes.</summary>
    public Task<string> EnqueueFailingAsync(string queue = "failing") =>
        EnqueueAsync("http.request", new { url = "http://127.0.0.1:1/unreachable" }, queue, maxAttempts: 1);

    public async Task<JsonElement> GetAsync(string path) => await Client.GetFromJsonAsync<JsonElement>(path.TrimStart('/'));

    public async Task<JsonElement> WaitForStateAsync(string id, string state, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        while (true)
        {
            var task = await GetAsync($"api/v1/tasks/{id}");
            if (task.GetProperty("state").GetString() == state)
            {
                return task;
            }
            Assert.True(DateTime.UtcNow < deadline, $"Task {id} did not reach '{state}' in time: {task}");
            await Task.Delay(50);
        }
    }

    /// <summary>Reads <paramref name="path"/> until <paramref name="condition"/> holds; fails with the last answer after 30 s.</summary>
    public async Task<JsonElement> WaitUntilAsync(string path, Func<JsonElement, bool> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            var answer = await GetAsync(path);
            if (condition(answer))
            {
                return answer;
            }
            Assert.True(DateTime.UtcNow < deadline, $"GET {path} never met the condition: {answer}");
            await Task.Delay(50);
        }
    }

    public async ValueTask DisposeAsync()
    {
        Client?.Dispose();
        Process?.Dispose();
        try
        {
            Directory.Delete(Folder, recursive: true);
        }
        catch (IOException)
        {
            // A file still held by the ending process; the temporary folder is cleaned by the system.
        }
        await Task.CompletedTask;
    }
}
