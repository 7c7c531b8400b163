using System.Net;
using System.Text;
using System.Text.Json;

namespace Conveyor.Server.Tests;

/// <summary><c>conveyor users add|passwd|list|remove</c> on a database, and a real <c>conveyor server</c> process signing
/// the users in with what the CLI set.</summary>
public sealed class UsersCliTests : IDisposable
{
    private const string FirstPassword = "first password 123";
    private const string SecondPassword = "second password 456";
    private readonly string _folder = TempFolder.Create();

    private Dictionary<string, string> Environment => new()
    {
        ["DATABASE_URL"] = "sqlite:///" + Path.Combine(_folder, "users.db"),
        ["LOG_LEVEL"] = "warning",
    };

    public void Dispose() => TempFolder.Delete(_folder);

    [Fact]
    public async Task Users_added_changed_and_removed_by_the_CLI_sign_in_to_a_running_server_accordingly()
    {
        var add = await ConveyorProcess.RunWithInputAsync(_folder, Environment, FirstPassword + "\n", "users", "add", "alice", "--role", "enqueue", "--password-stdin");
        Assert.True(add.ExitCode == 0, add.Error);
        Assert.DoesNotContain(FirstPassword, add.Output + add.Error, StringComparison.Ordinal);
        var again = await ConveyorProcess.RunWithInputAsync(_folder, Environment, FirstPassword + "\n", "users", "add", "alice", "--role", "read", "--password-stdin");
        Assert.Equal(2, again.ExitCode);
        Assert.Contains("already", again.Error, StringComparison.Ordinal);

        var list = await ConveyorProcess.RunAsync(_folder, Environment, "users", "list", "--json");
        Assert.True(list.ExitCode == 0, list.Error);
        var listed = JsonDocument.Parse(list.Output).RootElement.EnumerateArray().Single();
        Assert.Equal("alice", listed.GetProperty("name").GetString());
        Assert.Equal("enqueue", listed.GetProperty("role").GetString());
        Assert.False(listed.GetProperty("mfa").GetBoolean());
        Assert.DoesNotContain("AQAAAA", list.Output, StringComparison.Ordinal);

        using var server = ConveyorProcess.Start(_folder, Environment, "server", "--port", "0");
        var line = await server.WaitForLineAsync(l => l.StartsWith("Conveyor serving http://127.0.0.1:", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        using var http = new HttpClient { BaseAddress = new Uri(line["Conveyor serving ".Length..].Trim()) };
        Assert.Equal(HttpStatusCode.OK, await LoginAsync(http, "alice", FirstPassword));

        var passwd = await ConveyorProcess.RunAsync(_folder, new Dictionary<string, string>(Environment) { ["CONVEYOR_USER_PASSWORD"] = SecondPassword },
            "users", "passwd", "alice");
        Assert.True(passwd.ExitCode == 0, passwd.Error);
        Assert.Equal(HttpStatusCode.Unauthorized, await LoginAsync(http, "alice", FirstPassword));
        Assert.Equal(HttpStatusCode.OK, await LoginAsync(http, "alice", SecondPassword));

        var remove = await ConveyorProcess.RunAsync(_folder, Environment, "users", "remove", "alice");
        Assert.True(remove.ExitCode == 0, remove.Error);
        Assert.Equal(HttpStatusCode.Unauthorized, await LoginAsync(http, "alice", SecondPassword));
        var removeAgain = await ConveyorProcess.RunAsync(_folder, Environment, "users", "remove", "alice");
        Assert.Equal(2, removeAgain.ExitCode);

        var audit = await ConveyorProcess.RunAsync(_folder, Environment, "audit", "--json");
        Assert.True(audit.ExitCode == 0, audit.Error);
        foreach (var action in new[] { "user.add", "user.passwd", "user.remove" })
        {
            Assert.Contains($"\"{action}\"", audit.Output, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task A_short_password_a_bad_role_and_no_password_at_all_are_refused_with_the_reason()
    {
        var shortPassword = await ConveyorProcess.RunWithInputAsync(_folder, Environment, "short\n", "users", "add", "bob", "--role", "read", "--password-stdin");
        Assert.Equal(2, shortPassword.ExitCode);
        Assert.Contains("at least 12 characters", shortPassword.Error, StringComparison.Ordinal);
        Assert.Contains("Conveyor:Users:MinPasswordLength", shortPassword.Error, StringComparison.Ordinal);

        var badRole = await ConveyorProcess.RunWithInputAsync(_folder, Environment, FirstPassword + "\n", "users", "add", "bob", "--role", "root", "--password-stdin");
        Assert.Equal(2, badRole.ExitCode);
        Assert.Contains("--role", badRole.Error, StringComparison.Ordinal);

        // stdin redirected but --password-stdin not given, and no CONVEYOR_USER_PASSWORD: no prompt, a clear refusal.
        var none = await ConveyorProcess.RunWithInputAsync(_folder, Environment, "", "users", "add", "bob", "--role", "read");
        Assert.Equal(2, none.ExitCode);
        Assert.Contains("--password-stdin", none.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Reset_mfa_removes_an_enrolled_second_factor_so_the_password_alone_signs_in_again()
    {
        var add = await ConveyorProcess.RunWithInputAsync(_folder, Environment, FirstPassword + "\n", "users", "add", "carol", "--role", "read", "--password-stdin");
        Assert.True(add.ExitCode == 0, add.Error);
        using var server = ConveyorProcess.Start(_folder, Environment, "server", "--port", "0");
        var line = await server.WaitForLineAsync(l => l.StartsWith("Conveyor serving http://127.0.0.1:", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        using var http = new HttpClient { BaseAddress = new Uri(line["Conveyor serving ".Length..].Trim()) };

        // Enrol through the API, as the dashboard does: sign in, begin, confirm with a code of the new secret.
        using var signIn = await PostAsync(http, "/api/v1/session/login", new { user = "carol", password = FirstPassword });
        var cookies = signIn.Headers.GetValues("Set-Cookie").ToArray();
        string Cookie(string name) => cookies.Single(c => c.StartsWith(name + "=", StringComparison.Ordinal)).Split(';')[0][(name.Length + 1)..];
        var (session, csrf) = (Cookie("conveyor_session"), Cookie("conveyor_csrf"));
        using var enrol = await PostAsync(http, "/api/v1/session/mfa/enrol", new { }, session, csrf);
        Assert.Equal(HttpStatusCode.OK, enrol.StatusCode);
        var secret = JsonDocument.Parse(await enrol.Content.ReadAsStringAsync()).RootElement.GetProperty("secret").GetString()!;
        using var confirm = await PostAsync(http, "/api/v1/session/mfa/confirm",
            new { code = new OtpNet.Totp(OtpNet.Base32Encoding.ToBytes(secret)).ComputeTotp(DateTime.UtcNow) }, session, csrf);
        Assert.Equal(HttpStatusCode.OK, confirm.StatusCode);
        Assert.True(await CodeRequiredAsync(http, "carol", FirstPassword));
        var enrolled = await ConveyorProcess.RunAsync(_folder, Environment, "users", "list", "--json");
        Assert.True(JsonDocument.Parse(enrolled.Output).RootElement.EnumerateArray().Single().GetProperty("mfa").GetBoolean());

        var reset = await ConveyorProcess.RunAsync(_folder, Environment, "users", "reset-mfa", "carol");

        Assert.True(reset.ExitCode == 0, reset.Error);
        var listed = JsonDocument.Parse((await ConveyorProcess.RunAsync(_folder, Environment, "users", "list", "--json")).Output).RootElement.EnumerateArray().Single();
        Assert.False(listed.GetProperty("mfa").GetBoolean());
        Assert.Equal(0, listed.GetProperty("recoveryCodes").GetInt32());
        // The server reads users again within Conveyor:ApiKeyRefreshInterval, but a sign-in reads the stored user itself.
        Assert.False(await CodeRequiredAsync(http, "carol", FirstPassword));
        Assert.Equal(HttpStatusCode.OK, await LoginAsync(http, "carol", FirstPassword));
        var unknown = await ConveyorProcess.RunAsync(_folder, Environment, "users", "reset-mfa", "nobody");
        Assert.Equal(2, unknown.ExitCode);
        Assert.Contains("no user 'nobody'", unknown.Error, StringComparison.Ordinal);
        var audit = await ConveyorProcess.RunAsync(_folder, Environment, "audit", "--json");
        Assert.Contains("\"user.reset-mfa\"", audit.Output, StringComparison.Ordinal);
    }

    private static async Task<HttpResponseMessage> PostAsync(HttpClient http, string path, object body, string? session = null, string? csrf = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path)
        {
            Content = new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json"),
        };
        if (session is not null)
        {
            request.Headers.Add("Cookie", $"conveyor_session={session}");
            request.Headers.Add("X-Conveyor-CSRF", csrf);
        }
        return await http.SendAsync(request);
    }

    private static async Task<bool> CodeRequiredAsync(HttpClient http, string user, string password)
    {
        using var response = await PostAsync(http, "/api/v1/session/login", new { user, password });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("codeRequired").GetBoolean();
    }

    private static async Task<HttpStatusCode> LoginAsync(HttpClient http, string user, string password)
    {
        using var body = new StringContent(JsonSerializer.Serialize(new { user, password }), Encoding.UTF8, "application/json");
        using var response = await http.PostAsync("/api/v1/session/login", body);
        return response.StatusCode;
    }
}
