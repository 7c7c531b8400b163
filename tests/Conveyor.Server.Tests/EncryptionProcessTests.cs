using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Data.Sqlite;

namespace Conveyor.Server.Tests;

/// <summary><c>conveyor server</c> with <c>CONVEYOR_ENCRYPTION_KEY</c>: arguments in clear through the API and the CLI,
/// encrypted in the database file; bad keys stop the process with exit code 2, naming the setting and never the key.</summary>
public sealed class EncryptionProcessTests : IDisposable
{
    private readonly string _folder = TempFolder.Create();

    private Dictionary<string, string> Environment => new()
    {
        ["DATABASE_URL"] = "sqlite:///" + Path.Combine(_folder, "encrypted.db"),
        ["LOG_LEVEL"] = "warning",
    };

    public void Dispose() => TempFolder.Delete(_folder);

    private static string NewKey(int bytes = 32) => Convert.ToBase64String(RandomNumberGenerator.GetBytes(bytes));

    [Fact]
    public async Task A_server_with_a_key_stores_arguments_encrypted_and_shows_them_in_clear_through_the_api_and_the_cli()
    {
        var environment = Environment;
        environment["CONVEYOR_ENCRYPTION_KEY"] = "prod1:" + NewKey();
        const string secret = "tok-9d1e5b8c-secret";
        using var server = ConveyorProcess.Start(_folder, environment, "server", "--port", "0");
        var line = await server.WaitForLineAsync(l => l.StartsWith("Conveyor serving http://127.0.0.1:", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        using var http = new HttpClient { BaseAddress = new Uri(line["Conveyor serving ".Length..].Trim()) };

        using var created = await http.PostAsJsonAsync("/api/v1/tasks", new { task = "conveyor.noop", args = new { token = secret } });
        Assert.True(created.IsSuccessStatusCode, await created.Content.ReadAsStringAsync());
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetGuid();
        JsonElement task;
        var deadline = DateTime.UtcNow.AddSeconds(30);
        do
        {
            task = await http.GetFromJsonAsync<JsonElement>($"/api/v1/tasks/{id}");
            if (task.GetProperty("state").GetString() == "succeeded")
            {
                break;
            }
            await Task.Delay(25);
        }
        while (DateTime.UtcNow < deadline);
        Assert.Equal("succeeded", task.GetProperty("state").GetString());
        Assert.Equal(secret, task.GetProperty("args").GetProperty("token").GetString());

        var stored = await ReadArgsAsync(Path.Combine(_folder, "encrypted.db"), id);
        Assert.StartsWith("\"cv1.prod1.", stored, StringComparison.Ordinal);
        Assert.DoesNotContain(secret, stored, StringComparison.Ordinal);

        // Another process on the same database reads it in clear with the key, and as stored without it.
        var withKey = await ConveyorProcess.RunAsync(_folder, environment, "task", id.ToString(), "--json");
        Assert.True(withKey.ExitCode == 0, withKey.Error);
        Assert.Contains(secret, withKey.Output, StringComparison.Ordinal);
        var withoutKey = await ConveyorProcess.RunAsync(_folder, Environment, "task", id.ToString(), "--json");
        Assert.True(withoutKey.ExitCode == 0, withoutKey.Error);
        Assert.DoesNotContain(secret, withoutKey.Output, StringComparison.Ordinal);
        Assert.Contains("cv1.prod1.", withoutKey.Output, StringComparison.Ordinal);

        server.Terminate();
        Assert.Equal(0, await server.WaitForExitAsync(TimeSpan.FromSeconds(60)));
    }

    [Fact]
    public async Task A_bad_key_stops_the_server_with_exit_code_two_naming_the_setting_and_never_the_key()
    {
        var shortKey = NewKey(31);
        var file = Path.Combine(_folder, "keys.txt");
        var first = NewKey();
        var second = NewKey();
        await File.WriteAllLinesAsync(file, ["# current first", $"k2:{first}", $"k2:{second}"]);
        (string Name, string Value, string Expected, string[] Hidden)[] cases =
        [
            ("CONVEYOR_ENCRYPTION_KEY", shortKey, "CONVEYOR_ENCRYPTION_KEY (Conveyor:Encryption:Key) (key '1'): the key is 31 bytes, not 32", [shortKey]),
            ("CONVEYOR_ENCRYPTION_KEY", "k1:not-base64!", "CONVEYOR_ENCRYPTION_KEY (Conveyor:Encryption:Key) (key 'k1'): the key is not base64", ["not-base64!"]),
            ("CONVEYOR_ENCRYPTION_KEY_FILE", file, "line 3: the key id 'k2' is already used on line 2", [first, second]),
            ("CONVEYOR_ENCRYPTION_KEY_FILE", Path.Combine(_folder, "missing.txt"), "cannot be read", []),
        ];
        foreach (var (name, value, expected, hidden) in cases)
        {
            var environment = Environment;
            environment[name] = value;

            var (exitCode, output, error) = await ConveyorProcess.RunAsync(_folder, environment, "server", "--port", "0");

            Assert.True(exitCode == 2, $"{name}: exit {exitCode}: {error}");
            Assert.Contains(expected, error, StringComparison.Ordinal);
            Assert.Contains(name, error, StringComparison.Ordinal);
            Assert.DoesNotContain("Conveyor serving", output, StringComparison.Ordinal);
            foreach (var secret in hidden)
            {
                Assert.DoesNotContain(secret, output + error, StringComparison.Ordinal);
            }
        }
    }

    [Fact]
    public async Task The_worker_takes_a_key_file_by_flag_and_refuses_a_key_given_twice()
    {
        var file = Path.Combine(_folder, "keys.txt");
        await File.WriteAllLinesAsync(file, [$"new:{NewKey()}", $"old:{NewKey()}"]);
        var environment = Environment;
        environment["CONVEYOR_ENCRYPTION_KEY"] = NewKey();

        var (exitCode, _, error) = await ConveyorProcess.RunAsync(_folder, environment, "worker", "--encryption-key-file", file);

        Assert.Equal(2, exitCode);
        Assert.Contains("CONVEYOR_ENCRYPTION_KEY (Conveyor:Encryption:Key) and CONVEYOR_ENCRYPTION_KEY_FILE", error, StringComparison.Ordinal);
        Assert.Contains("are both set", error, StringComparison.Ordinal);
    }

    private static async Task<string> ReadArgsAsync(string path, Guid id)
    {
        await using var connection = new SqliteConnection($"Data Source={path};Mode=ReadOnly;Pooling=False");
        await connection.OpenAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT args FROM tasks";
        await using var reader = await command.ExecuteReaderAsync();
        var all = new List<string>();
        while (await reader.ReadAsync())
        {
            all.Add(reader.GetString(0));
        }
        return Assert.Single(all);
    }
}
