using System.Text.Json;

namespace Conveyor.Server.Tests;

/// <summary>The operator commands (<c>tasks</c>, <c>task</c>, <c>cancel</c>, <c>pause</c>, <c>resume</c>, <c>workers</c>) and
/// the rule that read-only commands never create a database.</summary>
public sealed class OperatorCliTests : IDisposable
{
    private readonly string _folder = TempFolder.Create();

    private string DatabasePath => Path.Combine(_folder, "ops.db");

    private Dictionary<string, string> Environment => new()
    {
        ["DATABASE_URL"] = "sqlite:///" + DatabasePath,
        ["LOG_LEVEL"] = "warning",
    };

    public void Dispose() => TempFolder.Delete(_folder);

    [Theory]
    [InlineData("info")]
    [InlineData("tasks")]
    [InlineData("task 0196a1b2-0000-7000-8000-000000000000")]
    [InlineData("workers --json")]
    [InlineData("schedules")]
    [InlineData("limits")]
    [InlineData("cancel 0196a1b2-0000-7000-8000-000000000000")]
    [InlineData("pause default")]
    public async Task Commands_on_a_missing_database_fail_naming_it_and_create_nothing(string arguments)
    {
        var (exitCode, output, error) = await ConveyorProcess.RunAsync(_folder, Environment, arguments.Split(' '));

        Assert.Equal(1, exitCode);
        Assert.Contains($"no database at sqlite:///{DatabasePath}", error, StringComparison.Ordinal);
        Assert.Equal("", output);
        Assert.False(File.Exists(DatabasePath), "a read-only command created the database");
        Assert.False(Directory.Exists(DatabasePath + ".notify"));
    }

    [Fact]
    public async Task Tasks_lists_filters_and_pages_and_task_shows_one_with_its_history()
    {
        var ids = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            ids.Add(await EnqueueAsync("conveyor.noop", "--queue", "mail"));
        }
        var later = await EnqueueAsync("conveyor.noop", "--delay", "PT1H");

        var all = await RunJsonAsync("tasks", "--json");
        Assert.Equal([later, .. Enumerable.Reverse(ids)], Ids(all));
        Assert.Equal(JsonValueKind.Null, all.GetProperty("nextCursor").ValueKind);

        var mail = await RunJsonAsync("tasks", "--queue", "mail", "--state", "queued", "--limit", "2", "--json");
        Assert.Equal([ids[2], ids[1]], Ids(mail));
        var cursor = mail.GetProperty("nextCursor").GetString()!;
        var next = await RunJsonAsync("tasks", "--queue", "mail", "--state", "queued", "--limit", "2", "--cursor", cursor, "--json");
        Assert.Equal([ids[0]], Ids(next));
        Assert.Equal([later], Ids(await RunJsonAsync("tasks", "--state", "scheduled", "--json")));

        var table = await ConveyorProcess.RunAsync(_folder, Environment, "tasks", "--limit", "2");
        Assert.True(table.ExitCode == 0, table.Error);
        Assert.Contains("STATE", table.Output, StringComparison.Ordinal);
        Assert.Contains("More: --cursor ", table.Output, StringComparison.Ordinal);

        var one = await RunJsonAsync("task", ids[0], "--json");
        Assert.Equal(ids[0], one.GetProperty("id").GetString());
        Assert.Equal("queued", one.GetProperty("state").GetString());
        Assert.Equal("queued", one.GetProperty("transitions")[0].GetProperty("state").GetString());
        var text = await ConveyorProcess.RunAsync(_folder, Environment, "task", ids[0]);
        Assert.True(text.ExitCode == 0, text.Error);
        Assert.Contains("History:", text.Output, StringComparison.Ordinal);
        Assert.Contains("mail", text.Output, StringComparison.Ordinal);

        var bad = await ConveyorProcess.RunAsync(_folder, Environment, "tasks", "--state", "lost");
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("state: 'lost' is not a state", bad.Error, StringComparison.Ordinal);
        var unknown = await ConveyorProcess.RunAsync(_folder, Environment, "task", Guid.CreateVersion7().ToString());
        Assert.Equal(1, unknown.ExitCode);
        Assert.Contains("there is no task", unknown.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Cancel_pause_resume_and_workers_act_on_the_database()
    {
        var id = await EnqueueAsync("conveyor.noop");

        var cancel = await RunJsonAsync("cancel", id, "--json");
        Assert.Equal("cancelled", cancel.GetProperty("outcome").GetString());
        Assert.Equal("cancelled", cancel.GetProperty("task").GetProperty("state").GetString());
        var again = await ConveyorProcess.RunAsync(_folder, Environment, "cancel", id);
        Assert.Equal(1, again.ExitCode);
        Assert.Contains("already cancelled", again.Output, StringComparison.Ordinal);

        var paused = await RunJsonAsync("pause", "default", "--json");
        Assert.True(paused.GetProperty("paused").GetBoolean());
        Assert.True(Queue(await RunJsonAsync("info", "--json"), "default").GetProperty("paused").GetBoolean());
        var resumed = await ConveyorProcess.RunAsync(_folder, Environment, "resume", "default");
        Assert.True(resumed.ExitCode == 0, resumed.Error);
        Assert.Contains("Resumed queue 'default'", resumed.Output, StringComparison.Ordinal);
        Assert.False(Queue(await RunJsonAsync("info", "--json"), "default").GetProperty("paused").GetBoolean());

        Assert.Equal(JsonValueKind.Array, (await RunJsonAsync("workers", "--json")).ValueKind);
        var workers = await ConveyorProcess.RunAsync(_folder, Environment, "workers");
        Assert.True(workers.ExitCode == 0, workers.Error);
        Assert.Contains("No workers seen recently.", workers.Output, StringComparison.Ordinal);
    }

    private async Task<string> EnqueueAsync(params string[] args)
    {
        var (exitCode, output, error) = await ConveyorProcess.RunAsync(_folder, Environment, ["enqueue", .. args, "--json"]);
        Assert.True(exitCode == 0, error);
        return JsonDocument.Parse(output).RootElement.GetProperty("id").GetString()!;
    }

    private async Task<JsonElement> RunJsonAsync(params string[] args)
    {
        var (exitCode, output, error) = await ConveyorProcess.RunAsync(_folder, Environment, args);
        Assert.True(exitCode == 0, $"conveyor {string.Join(' ', args)} exited {exitCode}: {error}");
        using var document = JsonDocument.Parse(output);
        return document.RootElement.Clone();
    }

    private static List<string> Ids(JsonElement page) =>
        page.GetProperty("items").EnumerateArray().Select(t => t.GetProperty("id").GetString()!).ToList();

    private static JsonElement Queue(JsonElement info, string name) =>
        info.GetProperty("queues").EnumerateArray().Single(q => q.GetProperty("name").GetString() == name);
}
