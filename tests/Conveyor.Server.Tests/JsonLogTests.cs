using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Conveyor.Server.Tests;

/// <summary><c>LOG_FORMAT=json</c> on a real <c>conveyor server</c>: every line of standard output is one JSON object, and
/// the lines about a task carry its id, name, queue, attempt and trace id in their scopes.</summary>
public sealed partial class JsonLogTests : IDisposable
{
    private readonly string _folder = TempFolder.Create();

    public void Dispose() => TempFolder.Delete(_folder);

    [Fact]
    public async Task Json_lines_carry_the_task_and_its_trace_in_scopes()
    {
        var environment = new Dictionary<string, string>
        {
            ["DATABASE_URL"] = "sqlite:///" + Path.Combine(_folder, "json.db"),
            ["LOG_FORMAT"] = "json",
            ["LOG_LEVEL"] = "debug",
        };
        using var server = ConveyorProcess.Start(_folder, environment, "server", "--port", "0");
        var banner = await server.WaitForLineAsync(l => l.Contains("Conveyor serving", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        var url = ServingUrl().Match(banner).Groups[1].Value;
        using var http = new HttpClient { BaseAddress = new Uri(url) };

        var traceId = ActivityTraceId.CreateRandom();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/v1/tasks") { Content = JsonContent.Create(new { task = "conveyor.noop" }) };
        request.Headers.Add("traceparent", $"00-{traceId}-{ActivitySpanId.CreateRandom()}-01");
        using var response = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var id = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
        // The attempt's last line (event 41, succeeded, at Debug).
        await server.WaitForLineAsync(l => l.Contains("\"EventId\":41", StringComparison.Ordinal) && l.Contains(id, StringComparison.Ordinal), TimeSpan.FromSeconds(30));
        server.Terminate();
        Assert.Equal(0, await server.WaitForExitAsync(TimeSpan.FromSeconds(60)));

        var lines = server.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.NotEmpty(lines);
        var entries = lines.Select(line =>
        {
            try
            {
                using var document = JsonDocument.Parse(line);
                Assert.Equal(JsonValueKind.Object, document.RootElement.ValueKind);
                return document.RootElement.Clone();
            }
            catch (JsonException ex)
            {
                throw new Xunit.Sdk.XunitException($"Not a JSON line: {line} ({ex.Message})");
            }
        }).ToList();
        Assert.Contains(entries, e => e.GetProperty("LogLevel").GetString() == "Debug");

        var aboutTask = entries.Where(e => e.GetProperty("Category").GetString() == "Conveyor.TaskLoggingMiddleware"
            && e.GetProperty("Message").GetString()!.Contains(id, StringComparison.Ordinal)).ToList();
        Assert.Equal([40, 41], aboutTask.Select(e => e.GetProperty("EventId").GetInt32()).Order());
        foreach (var entry in aboutTask)
        {
            var scope = entry.GetProperty("Scopes").EnumerateArray().Single(s => s.ValueKind == JsonValueKind.Object && s.TryGetProperty("TaskId", out _));
            Assert.Equal(id, scope.GetProperty("TaskId").ToString());
            Assert.Equal("conveyor.noop", scope.GetProperty("Task").GetString());
            Assert.Equal("default", scope.GetProperty("Queue").GetString());
            Assert.Equal(1, scope.GetProperty("Attempt").GetInt32());
            Assert.Equal(traceId.ToHexString(), scope.GetProperty("TraceId").GetString());
        }
    }

    [GeneratedRegex(@"Conveyor serving (http://127\.0\.0\.1:\d+)")]
    private static partial Regex ServingUrl();
}
