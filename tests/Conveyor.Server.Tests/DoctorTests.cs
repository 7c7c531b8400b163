using System.Text.Json;

namespace Conveyor.Server.Tests;

/// <summary><c>conveyor doctor</c> run as a real process: the checklist's items for the configuration the server would run
/// with, its exit codes, the files it looks at, and the secrets it must never print.</summary>
public sealed class DoctorTests : IDisposable
{
    private const int ChecklistFailed = 3;
    private static readonly string[] Statuses = ["pass", "warn", "fail", "n/a", "unknown"];

    private readonly string _folder = TempFolder.Create();

    public void Dispose() => TempFolder.Delete(_folder);

    [Fact]
    public async Task The_default_configuration_passes_every_item_that_applies_and_creates_nothing()
    {
        var (exitCode, output, error) = await ConveyorProcess.RunAsync(_folder, new Dictionary<string, string>(), "doctor", "--json");

        Assert.True(exitCode == 0, output + error);
        var items = Items(output);
        Assert.Equal(Enumerable.Range(1, 14), items.Keys.Order());
        foreach (var item in items.Values)
        {
            Assert.Contains(item.GetProperty("status").GetString(), Statuses);
            Assert.False(string.IsNullOrWhiteSpace(item.GetProperty("item").GetString()));
            Assert.False(string.IsNullOrWhiteSpace(item.GetProperty("detail").GetString()));
            Assert.True(item.TryGetProperty("setting", out _));
        }
        Assert.All(new[] { 1, 2, 3, 4, 5, 8, 9, 11, 13 }, id => Assert.Equal("pass", Status(items, id)));
        Assert.DoesNotContain(items.Values, i => i.GetProperty("status").GetString() == "fail");
        // No encryption key by default: a warning with the setting, never a pass.
        Assert.Equal("warn", Status(items, 10));
        Assert.Contains("CONVEYOR_ENCRYPTION_KEY", items[10].GetProperty("setting").GetString(), StringComparison.Ordinal);
        // Logins with MFA: built in, with the lockout settings named.
        Assert.Equal("pass", Status(items, 12));
        Assert.Contains("5 failures lock a user", items[12].GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Contains("random secret drawn at start", items[12].GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal(Environment.IsPrivilegedProcess ? "warn" : "pass", Status(items, 7));
        // The database is looked at, not created: the server would create it private.
        Assert.False(Directory.Exists(Path.Combine(_folder, "data")));
        Assert.Contains("will be created 0600", items[5].GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Off_loopback_without_tls_fails_the_tls_item_as_the_server_refuses_to_start()
    {
        var environment = new Dictionary<string, string>
        {
            ["DATABASE_URL"] = "sqlite:///" + Path.Combine(_folder, "data", "conveyor.db"),
            ["CONVEYOR_API_KEYS"] = "doctor-test-key-0123456789abcdefghijklmnop",
        };

        var doctor = await ConveyorProcess.RunAsync(_folder, environment, "doctor", "--host", "0.0.0.0", "--json");
        var server = await ConveyorProcess.RunAsync(_folder, environment, "server", "--host", "0.0.0.0", "--port", "0");
        var proxied = await ConveyorProcess.RunAsync(_folder, environment, "doctor", "--host", "0.0.0.0", "--behind-proxy", "--json");

        Assert.True(doctor.ExitCode == ChecklistFailed, doctor.Output + doctor.Error);
        var items = Items(doctor.Output);
        Assert.Equal("fail", Status(items, 9));
        Assert.Contains("--tls-cert", items[9].GetProperty("setting").GetString(), StringComparison.Ordinal);
        Assert.Contains("--behind-proxy", items[9].GetProperty("setting").GetString(), StringComparison.Ordinal);
        Assert.Equal("fail", Status(items, 1));
        Assert.Equal("pass", Status(items, 2));
        // The doctor's failure is the server's refusal.
        Assert.Equal(2, server.ExitCode);
        Assert.Contains("without TLS", server.Error, StringComparison.Ordinal);
        // Told a TLS proxy is in front, nothing fails; answering any Host off loopback warns.
        Assert.True(proxied.ExitCode == 0, proxied.Output + proxied.Error);
        var proxiedItems = Items(proxied.Output);
        Assert.Equal("pass", Status(proxiedItems, 9));
        Assert.Equal("warn", Status(proxiedItems, 3));
        Assert.Contains("ALLOWED_HOSTS", proxiedItems[3].GetProperty("setting").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task A_session_secret_is_checked_short_fails_item_12_and_a_readable_file_fails_item_8()
    {
        var file = Path.Combine(_folder, "session-secret");
        await File.WriteAllTextAsync(file, "a session secret of more than thirty-two characters\n");
        File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);

        var shortSecret = await ConveyorProcess.RunAsync(_folder, new Dictionary<string, string> { ["CONVEYOR_SESSION_SECRET"] = "short" }, "doctor", "--json");
        var readable = await ConveyorProcess.RunAsync(_folder, new Dictionary<string, string> { ["CONVEYOR_SESSION_SECRET_FILE"] = file }, "doctor", "--json");
        File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var fine = await ConveyorProcess.RunAsync(_folder, new Dictionary<string, string> { ["CONVEYOR_SESSION_SECRET_FILE"] = file }, "doctor", "--json");

        Assert.True(shortSecret.ExitCode == ChecklistFailed, shortSecret.Output + shortSecret.Error);
        var shortItems = Items(shortSecret.Output);
        Assert.Equal("fail", Status(shortItems, 12));
        Assert.Contains("CONVEYOR_SESSION_SECRET", shortItems[12].GetProperty("setting").GetString(), StringComparison.Ordinal);
        Assert.True(readable.ExitCode == ChecklistFailed, readable.Output + readable.Error);
        Assert.Equal("fail", Status(Items(readable.Output), 8));
        Assert.Contains("Conveyor:SessionSecretFile", Items(readable.Output)[8].GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.True(fine.ExitCode == 0, fine.Output + fine.Error);
        Assert.Contains("signed with the configured secret", Items(fine.Output)[12].GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task A_database_file_readable_by_others_fails_naming_its_path()
    {
        var database = Path.Combine(_folder, "data", "conveyor.db");
        var environment = new Dictionary<string, string> { ["DATABASE_URL"] = "sqlite:///" + database };
        var create = await ConveyorProcess.RunAsync(_folder, environment, "keys", "create", "--scope", "read");
        Assert.True(create.ExitCode == 0, create.Error);
        File.SetUnixFileMode(database, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);

        var open = await ConveyorProcess.RunAsync(_folder, environment, "doctor");
        var openJson = await ConveyorProcess.RunAsync(_folder, environment, "doctor", "--json");
        File.SetUnixFileMode(database, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var closed = await ConveyorProcess.RunAsync(_folder, environment, "doctor", "--json");

        Assert.True(open.ExitCode == ChecklistFailed, open.Output + open.Error);
        var line = open.Output.Split('\n').Single(l => l.StartsWith(" 5  fail", StringComparison.Ordinal));
        Assert.Contains($"{database} is mode 0644", line, StringComparison.Ordinal);
        Assert.Contains($"chmod 600 {database}", open.Output, StringComparison.Ordinal);
        var item = Items(openJson.Output)[5];
        Assert.Equal("fail", item.GetProperty("status").GetString());
        Assert.Equal($"chmod 600 {database}", item.GetProperty("setting").GetString());
        // Made private again, the item passes; the stored key is read from the database.
        Assert.True(closed.ExitCode == 0, closed.Output + closed.Error);
        var closedItems = Items(closed.Output);
        Assert.Equal("pass", Status(closedItems, 5));
        Assert.Contains($"{database} 0600", closedItems[5].GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Contains("1 stored key", closedItems[2].GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Secrets_in_the_environment_and_settings_never_reach_the_output()
    {
        const string ApiKey = "doctor-secret-api-key-7f3a9c1e5b2d4f6a8c0e";
        const string FileApiKey = "doctor-secret-file-key-0a1b2c3d4e5f6a7b8c9d";
        const string EncryptionKey = "ZG9jdG9yLXNlY3JldC1lbmNyeXB0aW9uLWtleS0zMmI=";
        const string DatabasePassword = "Pg-Secret-Pw-91c4e7";
        const string BrokerPassword = "Amqp-Secret-Pw-5d82aa";
        const string TlsPassword = "Tls-Secret-Pw-3b6f01";
        const string CliKey = "doctor-secret-cli-key-e4d5c6b7a8f9e0d1c2b3";
        const string SessionSecret = "doctor-secret-session-secret-5e6f7a8b9c0d";
        string[] secrets = [ApiKey, FileApiKey, EncryptionKey, DatabasePassword, BrokerPassword, TlsPassword, CliKey, SessionSecret];
        // A key in appsettings.json as well: item 8 names the file, never the key.
        await File.WriteAllTextAsync(Path.Combine(_folder, "appsettings.json"), JsonSerializer.Serialize(new { Conveyor = new { ApiKeys = new[] { FileApiKey } } }));
        var environment = new Dictionary<string, string>
        {
            ["CONVEYOR_API_KEYS"] = ApiKey,
            ["CONVEYOR_ENCRYPTION_KEY"] = EncryptionKey,
            // Nothing listens there: the stored keys' read fails, and its message is printed.
            ["DATABASE_URL"] = $"postgresql://conveyor:{DatabasePassword}@127.0.0.1:1/conveyor",
            ["AMQP_URL"] = $"amqp://guest:{BrokerPassword}@rabbit.invalid:5672/",
            ["CONVEYOR_TLS__PASSWORD"] = TlsPassword,
            ["CONVEYOR_API_KEY"] = CliKey,
            ["CONVEYOR_SESSION_SECRET"] = SessionSecret,
        };
        var badEncryptionKey = new Dictionary<string, string>(environment) { ["CONVEYOR_ENCRYPTION_KEY"] = "not-base64-" + EncryptionKey };

        var runs = new[]
        {
            await ConveyorProcess.RunAsync(_folder, environment, "doctor"),
            await ConveyorProcess.RunAsync(_folder, environment, "doctor", "--host", "0.0.0.0", "--json"),
            await ConveyorProcess.RunAsync(_folder, badEncryptionKey, "doctor", "--json"),
        };

        foreach (var (exitCode, output, error) in runs)
        {
            // The TLS password without a certificate stops the server: item 9 fails in every run.
            Assert.True(exitCode == ChecklistFailed, output + error);
            foreach (var secret in secrets)
            {
                Assert.DoesNotContain(secret, output, StringComparison.Ordinal);
                Assert.DoesNotContain(secret, error, StringComparison.Ordinal);
            }
        }
        var items = Items(runs[1].Output);
        Assert.Equal("warn", Status(items, 8));
        Assert.Contains("appsettings.json holds Conveyor:ApiKeys", items[8].GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal("fail", Status(items, 9));
        Assert.Equal("fail", Status(Items(runs[2].Output), 10));
    }

    [Fact]
    public async Task An_unreachable_backend_makes_the_stored_keys_unknown_without_hanging()
    {
        var environment = new Dictionary<string, string> { ["DATABASE_URL"] = "postgresql://conveyor:conveyor@127.0.0.1:1/conveyor" };
        var started = DateTime.UtcNow;

        var (exitCode, output, error) = await ConveyorProcess.RunAsync(_folder, environment, "doctor", "--json");

        Assert.True(exitCode == 0, output + error);
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(30));
        var items = Items(output);
        Assert.Equal("unknown", Status(items, 2));
        Assert.Contains("could not be read", items[2].GetProperty("detail").GetString(), StringComparison.Ordinal);
        // The items that need no backend are checked all the same.
        Assert.Equal("n/a", Status(items, 5));
        Assert.Equal("pass", Status(items, 9));
    }

    private static Dictionary<int, JsonElement> Items(string json)
    {
        using var document = JsonDocument.Parse(json);
        return document.RootElement.GetProperty("items").EnumerateArray().ToDictionary(i => i.GetProperty("id").GetInt32(), i => i.Clone());
    }

    private static string? Status(Dictionary<int, JsonElement> items, int id) => items[id].GetProperty("status").GetString();
}
