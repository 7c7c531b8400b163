using System.Buffers.Text;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Conveyor.AspNetCore.Security;
using Conveyor.Backends;

namespace Conveyor.Server.Tests;

/// <summary>Dashboard sessions are signed with a server secret that the database does not hold: a session made from all
/// the database holds is refused; replicas that share <c>Conveyor:SessionSecret</c> accept each other's sessions, a
/// replica without it does not; a bad secret setting stops the start naming it.</summary>
public sealed class SessionSecretTests : IDisposable
{
    private const string AdminKey = "session-secret-admin-key-0123456789abcdef";
    private const string SharedSecret = "a shared session secret of more than 32 characters";
    private const string Password = "correct horse battery";
    private readonly string _folder = TempFolder.Create();

    public void Dispose() => TempFolder.Delete(_folder);

    private Dictionary<string, string?> Settings(string? secret) => new()
    {
        ["Conveyor:ApiKeys"] = AdminKey,
        ["Conveyor:DatabaseUrl"] = "sqlite:///" + Path.Combine(_folder, "shared.db"),
        ["Conveyor:SessionSecret"] = secret,
    };

    [Fact]
    public async Task A_session_signed_with_everything_the_database_holds_is_refused()
    {
        await using var server = await TestServer.StartAsync(Settings(secret: null));
        var users = server.Service<IConveyorBackend>().Users!;
        Assert.True(await users.AddUserAsync(new StoredUser("admin", "admin", UserCredentials.HashPassword(Password), DateTimeOffset.UtcNow), CancellationToken.None));
        var (genuine, _) = await SignInAsync(server.Client, new { user = "admin", password = Password }, "/api/v1/session/login");
        Assert.Equal(HttpStatusCode.OK, await GetQueuesAsync(server.Client, genuine));
        var stored = (await users.GetUserAsync("admin", CancellationToken.None))!;

        // What someone with a copy of the database can compute: the session format with the user's stored fields (and,
        // for a key session, the stored SHA-256 of the key), but not the server's secret.
        var forgedUser = Forge(DashboardUsers.SessionId("admin", SessionKind.Full), DashboardUsers.SessionSecret(stored));
        var keyCaller = server.Service<ApiKeyRegistry>().FindById(ConfiguredKeyId())!;
        var forgedKey = Forge(keyCaller.KeyId, keyCaller.Hash);

        Assert.Equal(HttpStatusCode.Unauthorized, await GetQueuesAsync(server.Client, forgedUser));
        Assert.Equal(HttpStatusCode.Unauthorized, await GetQueuesAsync(server.Client, forgedKey));
        // The same construction with the server's secret is accepted: that secret is all the forger lacked.
        var serverKey = server.Service<SessionSecret>().Key;
        Assert.Equal(HttpStatusCode.OK, await GetQueuesAsync(server.Client,
            Forge(DashboardUsers.SessionId("admin", SessionKind.Full), HMACSHA256.HashData(serverKey, DashboardUsers.SessionSecret(stored)))));
        Assert.Equal(HttpStatusCode.OK, await GetQueuesAsync(server.Client, Forge(keyCaller.KeyId, HMACSHA256.HashData(serverKey, keyCaller.Hash))));
    }

    [Fact]
    public async Task Replicas_sharing_the_secret_accept_each_others_sessions_and_a_replica_without_it_does_not()
    {
        await using var first = await TestServer.StartAsync(Settings(SharedSecret));
        await using var second = await TestServer.StartAsync(Settings(SharedSecret));
        await using var other = await TestServer.StartAsync(Settings(secret: null));

        var (session, _) = await SignInAsync(first.Client, new { key = AdminKey }, "/api/v1/session");

        Assert.Equal(HttpStatusCode.OK, await GetQueuesAsync(first.Client, session));
        Assert.Equal(HttpStatusCode.OK, await GetQueuesAsync(second.Client, session));
        Assert.Equal(HttpStatusCode.Unauthorized, await GetQueuesAsync(other.Client, session));
    }

    [Theory]
    [InlineData("Conveyor:SessionSecret", "too short", "Conveyor:SessionSecret")]
    [InlineData("Conveyor:SessionSecretFile", "missing", "Conveyor:SessionSecretFile")]
    [InlineData("Conveyor:SessionSecretFile", "empty", "Conveyor:SessionSecretFile")]
    [InlineData("both", "", "Conveyor:SessionSecretFile")]
    public async Task A_bad_session_secret_stops_the_start_with_an_error_naming_the_setting(string setting, string value, string named)
    {
        var settings = new Dictionary<string, string?>();
        switch (setting)
        {
            case "Conveyor:SessionSecretFile" when value == "missing":
                settings[setting] = Path.Combine(_folder, "no-such-file");
                break;
            case "Conveyor:SessionSecretFile":
                var empty = Path.Combine(_folder, "empty-secret");
                await File.WriteAllTextAsync(empty, "# nothing but a comment\n");
                settings[setting] = empty;
                break;
            case "both":
                var file = Path.Combine(_folder, "secret");
                await File.WriteAllTextAsync(file, SharedSecret + "\n");
                settings["Conveyor:SessionSecret"] = SharedSecret;
                settings["Conveyor:SessionSecretFile"] = file;
                break;
            default:
                settings[setting] = value;
                break;
        }

        var error = await Assert.ThrowsAnyAsync<Exception>(() => TestServer.StartAsync(settings));

        Assert.Contains(named, error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(SharedSecret, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_secret_file_is_read_and_shared_like_the_setting()
    {
        var file = Path.Combine(_folder, "secret");
        await File.WriteAllTextAsync(file, "# the dashboard's session secret\n" + SharedSecret + "\n");
        await using var fromFile = await TestServer.StartAsync(new Dictionary<string, string?>(Settings(null)) { ["Conveyor:SessionSecretFile"] = file });
        await using var fromSetting = await TestServer.StartAsync(Settings(SharedSecret));

        var (session, _) = await SignInAsync(fromFile.Client, new { key = AdminKey }, "/api/v1/session");

        Assert.Equal(HttpStatusCode.OK, await GetQueuesAsync(fromSetting.Client, session));
    }

    private static string ConfiguredKeyId() => "config-" + Convert.ToHexStringLower(ApiKeyFormat.Hash(AdminKey))[..8];

    private static string Forge(string keyId, byte[] keyMaterial)
    {
        var expires = DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
        var payload = $"{expires}.csrf-token.{keyId}";
        var mac = HMACSHA256.HashData(keyMaterial, Encoding.UTF8.GetBytes("conveyor-dashboard-session-v3:" + payload));
        return $"{payload}.{Base64Url.EncodeToString(mac)}";
    }

    private static async Task<(string Session, string Csrf)> SignInAsync(HttpClient client, object body, string path)
    {
        using var content = new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json");
        using var response = await client.PostAsync(path, content);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var cookies = response.Headers.GetValues("Set-Cookie").ToArray();
        string Value(string name) => cookies.Single(c => c.StartsWith(name + "=", StringComparison.Ordinal)).Split(';')[0][(name.Length + 1)..];
        return (Value("conveyor_session"), Value("conveyor_csrf"));
    }

    private static async Task<HttpStatusCode> GetQueuesAsync(HttpClient client, string session)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/queues");
        request.Headers.Add("Cookie", $"conveyor_session={session}");
        using var response = await client.SendAsync(request);
        return response.StatusCode;
    }
}
