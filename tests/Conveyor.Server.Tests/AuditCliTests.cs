using System.Text.Json;

namespace Conveyor.Server.Tests;

/// <summary><c>conveyor audit</c>: the admin commands run on the database are recorded as actor <c>cli</c> with the OS
/// user, and listed newest first as JSON with the API's filters.</summary>
public sealed class AuditCliTests : IDisposable
{
    private readonly string _folder = TempFolder.Create();

    private Dictionary<string, string> Environment => new()
    {
        ["DATABASE_URL"] = "sqlite:///" + Path.Combine(_folder, "audit.db"),
        ["LOG_LEVEL"] = "warning",
    };

    public void Dispose() => TempFolder.Delete(_folder);

    private async Task<string> RunAsync(params string[] args)
    {
        var (exitCode, output, error) = await ConveyorProcess.RunAsync(_folder, Environment, args);
        Assert.True(exitCode == 0, $"conveyor {string.Join(' ', args)} exited {exitCode}: {error}");
        return output;
    }

    [Fact]
    public async Task Cli_admin_commands_are_listed_by_audit_json()
    {
        var key = (await RunAsync("keys", "create", "--scope", "read")).Trim();
        var enqueued = JsonDocument.Parse(await RunAsync("enqueue", "conveyor.noop", "--queue", "held", "--json")).RootElement.GetProperty("id").GetString()!;
        await RunAsync("cancel", enqueued);
        await RunAsync("pause", "held");

        using var all = JsonDocument.Parse(await RunAsync("audit", "--json"));
        var entries = all.RootElement.GetProperty("entries").EnumerateArray().ToList();
        Assert.Equal(["queue.pause", "task.cancel", "key.create"], entries.Select(e => e.GetProperty("action").GetString()));
        Assert.All(entries, e =>
        {
            Assert.Equal("cli", e.GetProperty("actor").GetString());
            Assert.Equal("cli", e.GetProperty("actorKind").GetString());
            Assert.Equal("ok", e.GetProperty("outcome").GetString());
            Assert.Equal(System.Environment.UserName, e.GetProperty("details").GetProperty("osUser").GetString());
        });
        Assert.Equal(["held", enqueued], entries.Take(2).Select(e => e.GetProperty("target").GetString()));
        Assert.StartsWith("cvk_", key, StringComparison.Ordinal);
        Assert.DoesNotContain(key, all.RootElement.GetRawText(), StringComparison.Ordinal);

        using var filtered = JsonDocument.Parse(await RunAsync("audit", "--action", "task.", "--json"));
        Assert.Equal(["task.cancel"], filtered.RootElement.GetProperty("entries").EnumerateArray().Select(e => e.GetProperty("action").GetString()));

        var (exitCode, _, error) = await ConveyorProcess.RunAsync(_folder, Environment, "audit", "--since", "last tuesday");
        Assert.Equal(2, exitCode);
        Assert.Contains("--since:", error, StringComparison.Ordinal);
    }
}
