using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Data.Sqlite;

namespace Conveyor.Server.Tests;

/// <summary><c>conveyor keys rotate-data</c> on a SQLite database: tasks a server wrote with key A are re-encrypted with
/// key B (the key file's first), so that afterwards key B alone reads them in clear and no stored value is in key A.</summary>
public sealed class KeyRotationProcessTests : IDisposable
{
    private const string Secret = "tok-4b7e01-rotate";

    private readonly string _folder = TempFolder.Create();

    private string Database => Path.Combine(_folder, "rotate.db");

    private Dictionary<string, string> Environment => new()
    {
        ["DATABASE_URL"] = "sqlite:///" + Database,
        ["LOG_LEVEL"] = "warning",
        ["CONVEYOR_HTTP__ALLOWED_HOSTS"] = "127.0.0.1",
    };

    public void Dispose() => TempFolder.Delete(_folder);

    private static string NewKey() => Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));

    [Fact]
    public async Task Rotate_data_rewrites_values_of_the_old_key_with_the_current_key_so_the_old_key_can_go()
    {
        var keyA = "A:" + NewKey();
        var keyB = "B:" + NewKey();
        await using var recorder = await CallRecorder.StartAsync(markers: 2, work: TimeSpan.Zero);
        var ids = await WriteTasksWithKeyAsync(keyA, recorder);
        var before = await ReadStoredValuesAsync();
        Assert.Contains(before, v => v.Contains("cv1.A.", StringComparison.Ordinal));
        Assert.DoesNotContain(before, v => v.Contains(Secret, StringComparison.Ordinal));

        var withoutKeys = await ConveyorProcess.RunAsync(_folder, Environment, "keys", "rotate-data");
        Assert.True(withoutKeys.ExitCode == 2, $"exit {withoutKeys.ExitCode}: {withoutKeys.Error}");
        Assert.Contains("CONVEYOR_ENCRYPTION_KEY", withoutKeys.Error, StringComparison.Ordinal);

        var file = Path.Combine(_folder, "keys.txt");
        await File.WriteAllLinesAsync(file, [keyB, keyA]);
        var rotation = Environment;
        rotation["CONVEYOR_ENCRYPTION_KEY_FILE"] = file;

        var dryRun = await ConveyorProcess.RunAsync(_folder, rotation, "keys", "rotate-data", "--dry-run", "--json");
        Assert.True(dryRun.ExitCode == 0, dryRun.Error);
        Assert.Equal(before.Order(), (await ReadStoredValuesAsync()).Order());

        var run = await ConveyorProcess.RunAsync(_folder, rotation, "keys", "rotate-data", "--batch-size", "2");
        Assert.True(run.ExitCode == 0, run.Error);
        Assert.Contains("Tasks scanned: 3", run.Output, StringComparison.Ordinal);
        Assert.Contains("Tasks rewritten: 3", run.Output, StringComparison.Ordinal);
        Assert.Contains("Unknown key ids: none", run.Output, StringComparison.Ordinal);
        Assert.Contains("the other keys can be removed", run.Output, StringComparison.Ordinal);

        var after = await ReadStoredValuesAsync();
        Assert.Equal(before.Count, after.Count);
        Assert.DoesNotContain(after, v => v.Contains("cv1.A.", StringComparison.Ordinal));
        Assert.DoesNotContain(after, v => v.Contains(Secret, StringComparison.Ordinal));
        Assert.All(after, v => Assert.Contains("cv1.B.", v, StringComparison.Ordinal));

        // Key B alone reads every task in clear: arguments, results and errors.
        var onlyB = Environment;
        onlyB["CONVEYOR_ENCRYPTION_KEY"] = keyB;
        foreach (var id in ids)
        {
            var task = await ConveyorProcess.RunAsync(_folder, onlyB, "task", id.ToString(), "--json");
            Assert.True(task.ExitCode == 0, task.Error);
            Assert.DoesNotContain("cv1.", task.Output, StringComparison.Ordinal);
            var record = JsonDocument.Parse(task.Output).RootElement;
            Assert.Contains(Secret, record.GetProperty("args").GetProperty("url").GetString(), StringComparison.Ordinal);
            if (record.GetProperty("state").GetString() == "succeeded")
            {
                Assert.Equal(JsonValueKind.Object, record.GetProperty("result").ValueKind);
            }
        }

        var again = await ConveyorProcess.RunAsync(_folder, rotation, "keys", "rotate-data", "--json");
        Assert.True(again.ExitCode == 0, again.Error);
        var report = JsonDocument.Parse(again.Output).RootElement;
        Assert.Equal(3, report.GetProperty("tasksScanned").GetInt64());
        Assert.Equal(0, report.GetProperty("tasksRewritten").GetInt64());
        Assert.Empty(report.GetProperty("valuesRewrittenByKey").EnumerateObject());
        Assert.Equal(after.Order(), (await ReadStoredValuesAsync()).Order());
    }

    /// <summary>Runs a server with <paramref name="key"/> until two http.request tasks succeeded (arguments and results)
    /// and one failed (errors), then stops it.</summary>
    private async Task<List<Guid>> WriteTasksWithKeyAsync(string key, CallRecorder recorder)
    {
        var environment = Environment;
        environment["CONVEYOR_ENCRYPTION_KEY"] = key;
        using var server = ConveyorProcess.Start(_folder, environment, "server", "--port", "0");
        var line = await server.WaitForLineAsync(l => l.StartsWith("Conveyor serving http://127.0.0.1:", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        using var http = new HttpClient { BaseAddress = new Uri(line["Conveyor serving ".Length..].Trim()) };
        var ids = new List<Guid>();
        foreach (var (url, marker) in new[] { (recorder.Url, "0"), (recorder.Url, "1"), (new Uri("http://127.0.0.1:1/run"), "2") })
        {
            using var created = await http.PostAsJsonAsync("/api/v1/tasks", new
            {
                task = "http.request",
                args = new { method = "POST", url = $"{url}?token={Secret}", body = marker },
                maxAttempts = 1,
            });
            Assert.True(created.IsSuccessStatusCode, await created.Content.ReadAsStringAsync());
            ids.Add((await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetGuid());
        }
        var deadline = DateTime.UtcNow.AddSeconds(60);
        var states = new List<string?>();
        do
        {
            states.Clear();
            foreach (var id in ids)
            {
                states.Add((await http.GetFromJsonAsync<JsonElement>($"/api/v1/tasks/{id}")).GetProperty("state").GetString());
            }
            if (states.SequenceEqual(["succeeded", "succeeded", "dead"]))
            {
                break;
            }
            await Task.Delay(50);
        }
        while (DateTime.UtcNow < deadline);
        Assert.Equal(["succeeded", "succeeded", "dead"], states);
        server.Terminate();
        Assert.Equal(0, await server.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        return ids;
    }

    /// <summary>Every stored argument, result, error and attempt-error value of the database file, read raw.</summary>
    private async Task<List<string>> ReadStoredValuesAsync()
    {
        await using var connection = new SqliteConnection($"Data Source={Database};Mode=ReadOnly;Pooling=False");
        await connection.OpenAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT args, result, error, errors FROM tasks";
        await using var reader = await command.ExecuteReaderAsync();
        var values = new List<string>();
        while (await reader.ReadAsync())
        {
            for (var i = 0; i < 4; i++)
            {
                if (!reader.IsDBNull(i))
                {
                    values.Add(reader.GetString(i));
                }
            }
        }
        return values;
    }
}
