using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;

namespace Conveyor.Server.Tests;

/// <summary><c>conveyor keys create|list|revoke</c> against a real <c>conveyor server</c> process on the same database, and
/// the server's start-up refusals for keys.</summary>
public sealed class KeysCliTests : IDisposable
{
    private readonly string _folder = TempFolder.Create();

    private Dictionary<string, string> Environment => new()
    {
        ["DATABASE_URL"] = "sqlite:///" + Path.Combine(_folder, "keys.db"),
        ["LOG_LEVEL"] = "warning",
        // A short refresh so that a revocation from the CLI reaches the server quickly.
        ["CONVEYOR_API_KEY_REFRESH_INTERVAL"] = "00:00:01",
    };

    public void Dispose() => TempFolder.Delete(_folder);

    [Fact]
    public async Task A_created_key_opens_a_running_server_to_its_scope_and_a_revoked_one_is_refused()
    {
        var create = await ConveyorProcess.RunAsync(_folder, Environment, "keys", "create", "--scope", "read", "--name", "ci reader");
        Assert.True(create.ExitCode == 0, create.Error);
        var key = create.Output.Trim();
        Assert.StartsWith("cvk_", key, StringComparison.Ordinal);
        Assert.Contains("Copy it now", create.Error, StringComparison.Ordinal);

        var list = await ConveyorProcess.RunAsync(_folder, Environment, "keys", "list", "--json");
        Assert.True(list.ExitCode == 0, list.Error);
        Assert.DoesNotContain(key, list.Output, StringComparison.Ordinal);
        var listed = JsonDocument.Parse(list.Output).RootElement.EnumerateArray().Single();
        Assert.Equal("ci reader", listed.GetProperty("name").GetString());
        Assert.Equal(["read"], listed.GetProperty("scopes").EnumerateArray().Select(s => s.GetString()));
        var id = listed.GetProperty("id").GetString()!;

        using var server = ConveyorProcess.Start(_folder, Environment, "server", "--port", "0");
        var line = await server.WaitForLineAsync(l => l.StartsWith("Conveyor serving http://127.0.0.1:", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        using var http = new HttpClient { BaseAddress = new Uri(line["Conveyor serving ".Length..].Trim()) };

        // A stored key makes the API need one, though none is configured.
        using (var anonymous = await http.GetAsync("/api/v1/queues"))
        {
            await ApiValidationTests.AssertProblemAsync(anonymous, HttpStatusCode.Unauthorized);
        }
        Assert.Equal(HttpStatusCode.OK, await StatusAsync(http, HttpMethod.Get, "/api/v1/queues", key));
        Assert.Equal(HttpStatusCode.Forbidden, await StatusAsync(http, HttpMethod.Post, "/api/v1/queues/default/pause", key));

        var revoke = await ConveyorProcess.RunAsync(_folder, Environment, "keys", "revoke", id);
        Assert.True(revoke.ExitCode == 0, revoke.Error);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        HttpStatusCode status;
        while ((status = await StatusAsync(http, HttpMethod.Get, "/api/v1/queues", key)) == HttpStatusCode.OK && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100);
        }
        Assert.Equal(HttpStatusCode.Unauthorized, status);

        var again = await ConveyorProcess.RunAsync(_folder, Environment, "keys", "revoke", "no-such-id");
        Assert.Equal(2, again.ExitCode);
    }

    [Theory]
    [InlineData("--scope", "write")]
    [InlineData("--scope", ",")]
    public async Task Create_with_bad_settings_exits_2_naming_the_flag(params string[] flags)
    {
        var (exitCode, _, error) = await ConveyorProcess.RunAsync(_folder, Environment, ["keys", "create", .. flags]);

        Assert.Equal(2, exitCode);
        Assert.Contains("--", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Server_refuses_a_short_key_and_the_removed_api_key_flag()
    {
        var environment = Environment;
        environment["CONVEYOR_API_KEYS"] = "tooshort";
        var shortKey = await ConveyorProcess.RunAsync(_folder, environment, "server", "--port", "0");
        var flag = await ConveyorProcess.RunAsync(_folder, Environment, "server", "--port", "0", "--api-key", "x-0123456789abcdefghijklmnopqrstuvwxyz");

        Assert.Equal(2, shortKey.ExitCode);
        Assert.Contains("at least 32", shortKey.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("tooshort", shortKey.Error, StringComparison.Ordinal);
        Assert.NotEqual(0, flag.ExitCode);
        Assert.Contains("--api-key", flag.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Real_server_refuses_a_rebinding_host()
    {
        using var server = ConveyorProcess.Start(_folder, Environment, "server", "--port", "0");
        var line = await server.WaitForLineAsync(l => l.StartsWith("Conveyor serving http://127.0.0.1:", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        using var http = new HttpClient { BaseAddress = new Uri(line["Conveyor serving ".Length..].Trim()) };
        using var rebound = new HttpRequestMessage(HttpMethod.Post, "/api/v1/tasks")
        {
            Content = new StringContent("""{"task": "conveyor.noop"}""", System.Text.Encoding.UTF8, "application/json"),
        };
        rebound.Headers.Host = "attacker.example";

        using var refused = await http.SendAsync(rebound);
        using var local = await http.GetAsync("/api/v1/queues");

        await ApiValidationTests.AssertProblemAsync(refused, HttpStatusCode.BadRequest);
        Assert.Equal(HttpStatusCode.OK, local.StatusCode);
    }

    private static async Task<HttpStatusCode> StatusAsync(HttpClient http, HttpMethod method, string path, string key)
    {
        using var request = new HttpRequestMessage(method, path);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        using var response = await http.SendAsync(request);
        return response.StatusCode;
    }
}
