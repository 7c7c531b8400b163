using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Conveyor.Server.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Server.Tests;

/// <summary>The real server (Kestrel on a free loopback port, SQLite in a temporary folder), started in this process.</summary>
public sealed class TestServer : IAsyncDisposable
{
    /// <summary>Queues the test servers' worker consumes; other queue names hold tasks that stay queued.</summary>
    public const string WorkerQueues = "default,pausable";

    private readonly string _folder;

    private TestServer(WebApplication app, string folder)
    {
        App = app;
        _folder = folder;
        BaseAddress = new Uri(app.Urls.First());
        Client = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(30) };
    }

    public WebApplication App { get; }
    public Uri BaseAddress { get; }
    public HttpClient Client { get; }

    public static async Task<TestServer> StartAsync(IReadOnlyDictionary<string, string?>? settings = null)
    {
        var folder = TempFolder.Create();
        var flags = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase)
        {
            ["Conveyor:Host"] = "127.0.0.1",
            ["Conveyor:Port"] = "0",
            ["Conveyor:DatabaseUrl"] = "sqlite:///" + Path.Combine(folder, "conveyor.db"),
            ["Conveyor:Worker:Queues"] = WorkerQueues,
            ["Logging:LogLevel:Default"] = "Warning",
        };
        foreach (var (key, value) in settings ?? new Dictionary<string, string?>())
        {
            flags[key] = value;
        }
        // An empty environment: the process's HOST, PORT or DATABASE_URL must not leak into the test.
        var app = ConveyorHosts.BuildServer(flags, environment: new Dictionary<string, string?>());
        await app.StartAsync();
        return new TestServer(app, folder);
    }

    public T Service<T>() where T : notnull => App.Services.GetRequiredService<T>();

    public Task<HttpResponseMessage> PostJsonAsync(string path, string json) =>
        Client.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));

    public static async Task<JsonElement> ReadJsonAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        using var document = JsonDocument.Parse(text);
        return document.RootElement.Clone();
    }

    /// <summary>Enqueues through the API and returns the task's id; fails unless the answer is 201.</summary>
    public async Task<Guid> EnqueueAsync(object body)
    {
        using var response = await Client.PostAsJsonAsync("/api/v1/tasks", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == System.Net.HttpStatusCode.Created, $"{(int)response.StatusCode}: {text}");
        using var document = JsonDocument.Parse(text);
        return document.RootElement.GetProperty("id").GetGuid();
    }

    public async Task<JsonElement> GetTaskAsync(Guid id)
    {
        using var response = await Client.GetAsync($"/api/v1/tasks/{id}");
        response.EnsureSuccessStatusCode();
        return await ReadJsonAsync(response);
    }

    /// <summary>Polls the task until it is in <paramref name="state"/>; fails with its last shape after <paramref name="timeout"/> (default 30 s).</summary>
    public async Task<JsonElement> WaitForStateAsync(Guid id, string state, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        while (true)
        {
            var task = await GetTaskAsync(id);
            if (task.GetProperty("state").GetString() == state)
            {
                return task;
            }
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"Task {id} did not reach '{state}' in time; it is: {task}");
            }
            await Task.Delay(25);
        }
    }

    /// <summary>Every stored task, counted over all queues and states.</summary>
    public async Task<long> CountTasksAsync()
    {
        var queues = await Client.GetFromJsonAsync<JsonElement>("/api/v1/queues");
        long total = 0;
        foreach (var queue in queues.EnumerateArray())
        {
            foreach (var property in queue.EnumerateObject())
            {
                if (property.Value.ValueKind == JsonValueKind.Number)
                {
                    total += property.Value.GetInt64();
                }
            }
        }
        return total;
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
        TempFolder.Delete(_folder);
    }
}

/// <summary>A fresh folder per server or process, removed afterwards.</summary>
public static class TempFolder
{
    public static string Create()
    {
        var folder = Path.Combine(Path.GetTempPath(), "conveyor-server-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        return folder;
    }

    public static void Delete(string folder)
    {
        try
        {
            Directory.Delete(folder, recursive: true);
        }
        catch (IOException)
        {
            // A file still open by a process that is ending; the temp folder is cleaned by the OS.
        }
    }
}

/// <summary>One server per test class; keys and settings come from the subclass.</summary>
public abstract class ServerFixture : IAsyncLifetime
{
    private TestServer? _server;

    public TestServer Server => _server ?? throw new InvalidOperationException("Not started");

    protected virtual IReadOnlyDictionary<string, string?> Settings => new Dictionary<string, string?>();

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(Settings);

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }
}

/// <summary>No API keys; http.request may call 127.0.0.1.</summary>
public sealed class OpenServerFixture : ServerFixture
{
    protected override IReadOnlyDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Conveyor:Http:AllowedHosts:0"] = "127.0.0.1",
    };
}
