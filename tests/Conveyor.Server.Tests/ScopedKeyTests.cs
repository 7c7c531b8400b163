using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Conveyor.AspNetCore.Security;
using Conveyor.Server.Configuration;
using Conveyor.Server.Hosting;

namespace Conveyor.Server.Tests;

/// <summary>Scoped API keys: configured ones (admin, or scoped in the key file) and stored ones created through
/// <c>/api/v1/keys</c>; 403 naming the scope; queue limits; revocation; last use recorded in batches.</summary>
public sealed class ScopedKeyTests : IAsyncLifetime
{
    private const string AdminKey = "admin-key-0123456789abcdefghijklmnopqr";
    private const string ReadKey = "read-key-0123456789abcdefghijklmnopqrs";
    private const string EnqueueKey = "enqueue-key-0123456789abcdefghijklmnop";
    private readonly string _folder = TempFolder.Create();
    private TestServer _server = null!;

    public async Task InitializeAsync()
    {
        var file = Path.Combine(_folder, "keys");
        await File.WriteAllTextAsync(file, $"""
            # operators
            {ReadKey} scopes=read
            {EnqueueKey}   scopes=enqueue   queues=emails,default

            """);
        _server = await TestServer.StartAsync(new Dictionary<string, string?>
        {
            ["Conveyor:ApiKeys"] = AdminKey,
            ["Conveyor:ApiKeyFile"] = file,
            ["Conveyor:FailedAuthLimit"] = "100000",
        });
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        TempFolder.Delete(_folder);
    }

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, string? key, string? json = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (key is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        }
        if (json is not null)
        {
            request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        }
        return await _server.Client.SendAsync(request);
    }

    private static async Task AssertForbiddenForScopeAsync(HttpResponseMessage response, string scope)
    {
        var problem = await ApiValidationTests.AssertProblemAsync(response, HttpStatusCode.Forbidden);
        Assert.Equal(scope, problem.GetProperty("scope").GetString());
        Assert.Contains($"'{scope}' scope", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_read_key_reads_but_cannot_enqueue_or_act()
    {
        using (var queues = await SendAsync(HttpMethod.Get, "/api/v1/queues", ReadKey))
        {
            Assert.Equal(HttpStatusCode.OK, queues.StatusCode);
        }
        using (var metrics = await SendAsync(HttpMethod.Get, "/metrics", ReadKey))
        {
            Assert.Equal(HttpStatusCode.OK, metrics.StatusCode);
        }
        using (var enqueue = await SendAsync(HttpMethod.Post, "/api/v1/tasks", ReadKey, """{"task": "conveyor.noop"}"""))
        {
            await AssertForbiddenForScopeAsync(enqueue, ApiScopes.Enqueue);
        }
        using (var pause = await SendAsync(HttpMethod.Post, "/api/v1/queues/default/pause", ReadKey))
        {
            await AssertForbiddenForScopeAsync(pause, ApiScopes.Admin);
        }
        using var keys = await SendAsync(HttpMethod.Get, "/api/v1/keys", ReadKey);
        await AssertForbiddenForScopeAsync(keys, ApiScopes.Admin);
    }

    [Fact]
    public async Task An_enqueue_key_limited_to_queues_enqueues_there_only_and_reads_nothing()
    {
        using (var allowed = await SendAsync(HttpMethod.Post, "/api/v1/tasks", EnqueueKey, """{"task": "conveyor.noop", "queue": "emails"}"""))
        {
            Assert.Equal(HttpStatusCode.Created, allowed.StatusCode);
        }
        using (var byDefault = await SendAsync(HttpMethod.Post, "/api/v1/tasks", EnqueueKey, """{"task": "conveyor.noop"}"""))
        {
            Assert.Equal(HttpStatusCode.Created, byDefault.StatusCode);
        }
        using (var other = await SendAsync(HttpMethod.Post, "/api/v1/tasks", EnqueueKey, """{"task": "conveyor.noop", "queue": "billing"}"""))
        {
            var problem = await ApiValidationTests.AssertProblemAsync(other, HttpStatusCode.Forbidden);
            Assert.Contains("'billing'", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
        }
        using (var batch = await SendAsync(HttpMethod.Post, "/api/v1/tasks/batch", EnqueueKey,
            """{"tasks": [{"task": "conveyor.noop", "queue": "emails"}, {"task": "conveyor.noop", "queue": "billing"}]}"""))
        {
            await ApiValidationTests.AssertProblemAsync(batch, HttpStatusCode.Forbidden);
        }
        using var read = await SendAsync(HttpMethod.Get, "/api/v1/tasks", EnqueueKey);
        await AssertForbiddenForScopeAsync(read, ApiScopes.Read);
        // Nothing of the refused requests was stored: the two accepted tasks only.
        using var list = await SendAsync(HttpMethod.Get, "/api/v1/tasks?limit=100", AdminKey);
        Assert.Equal(2, (await TestServer.ReadJsonAsync(list)).GetProperty("items").GetArrayLength());
    }

    [Fact]
    public async Task Stored_keys_are_created_once_listed_without_secret_scoped_to_queues_and_revoked()
    {
        using var created = await SendAsync(HttpMethod.Post, "/api/v1/keys", AdminKey,
            """{"name": "reports reader", "scopes": ["read"], "queues": ["reports"]}""");
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var body = await TestServer.ReadJsonAsync(created);
        var key = body.GetProperty("key").GetString()!;
        var id = body.GetProperty("id").GetString()!;
        Assert.StartsWith(ApiKeyFormat.Prefix, key, StringComparison.Ordinal);
        Assert.True(key.Length >= 32 + ApiKeyFormat.Prefix.Length, key);

        // Its queue only: the queue list is filtered, tasks elsewhere do not exist for it, spanning endpoints are refused.
        var elsewhere = await EnqueueAsAdminAsync("default");
        var mine = await EnqueueAsAdminAsync("reports");
        using (var queues = await SendAsync(HttpMethod.Get, "/api/v1/queues", key))
        {
            Assert.Equal(["reports"], (await TestServer.ReadJsonAsync(queues)).EnumerateArray().Select(q => q.GetProperty("name").GetString()));
        }
        using (var task = await SendAsync(HttpMethod.Get, $"/api/v1/tasks/{mine}", key))
        {
            Assert.Equal(HttpStatusCode.OK, task.StatusCode);
        }
        using (var hidden = await SendAsync(HttpMethod.Get, $"/api/v1/tasks/{elsewhere}", key))
        {
            await ApiValidationTests.AssertProblemAsync(hidden, HttpStatusCode.NotFound);
        }
        using (var filtered = await SendAsync(HttpMethod.Get, "/api/v1/tasks?queue=reports", key))
        {
            Assert.Equal(HttpStatusCode.OK, filtered.StatusCode);
        }
        using (var unfiltered = await SendAsync(HttpMethod.Get, "/api/v1/tasks", key))
        {
            await ApiValidationTests.AssertProblemAsync(unfiltered, HttpStatusCode.Forbidden);
        }
        using (var workers = await SendAsync(HttpMethod.Get, "/api/v1/workers", key))
        {
            await ApiValidationTests.AssertProblemAsync(workers, HttpStatusCode.Forbidden);
        }

        // Listed without the key or its hash; its use is recorded once the server writes its batch.
        await _server.Service<ApiKeyRegistry>().RefreshAsync(CancellationToken.None);
        using (var list = await SendAsync(HttpMethod.Get, "/api/v1/keys", AdminKey))
        {
            var text = await list.Content.ReadAsStringAsync();
            Assert.DoesNotContain(key, text, StringComparison.Ordinal);
            Assert.DoesNotContain(ApiKeyFormat.HashHex(key), text, StringComparison.Ordinal);
            var listed = JsonDocument.Parse(text).RootElement.EnumerateArray().Single(k => k.GetProperty("id").GetString() == id);
            Assert.Equal("reports reader", listed.GetProperty("name").GetString());
            Assert.Equal(JsonValueKind.String, listed.GetProperty("lastUsedAt").ValueKind);
            Assert.Equal(JsonValueKind.Null, listed.GetProperty("revokedAt").ValueKind);
        }

        using (var revoked = await SendAsync(HttpMethod.Delete, $"/api/v1/keys/{id}", AdminKey))
        {
            Assert.Equal(HttpStatusCode.OK, revoked.StatusCode);
        }
        using var refused = await SendAsync(HttpMethod.Get, "/api/v1/queues", key);
        await ApiValidationTests.AssertProblemAsync(refused, HttpStatusCode.Unauthorized);
    }

    [Theory]
    [InlineData("""{"scopes": []}""", "scopes")]
    [InlineData("""{"scopes": ["write"]}""", "scopes[0]")]
    [InlineData("""{"name": "x"}""", "scopes")]
    [InlineData("""{"scopes": ["read"], "queues": ["a,b"]}""", "queues[0]")]
    [InlineData("""{"scopes": "read"}""", "scopes")]
    public async Task A_key_with_bad_settings_is_422_naming_the_field(string json, string field)
    {
        using var response = await SendAsync(HttpMethod.Post, "/api/v1/keys", AdminKey, json);

        var problem = await ApiValidationTests.AssertProblemAsync(response, HttpStatusCode.UnprocessableEntity);
        ApiValidationTests.AssertNamesField(problem, field);
    }

    [Fact]
    public async Task A_session_opened_with_a_read_key_cannot_act()
    {
        using var client = new HttpClient(new HttpClientHandler { UseCookies = false }) { BaseAddress = _server.BaseAddress };
        using var signIn = await client.PostAsync("/api/v1/session", new StringContent($$"""{"key": "{{ReadKey}}"}""", Encoding.UTF8, "application/json"));
        Assert.Equal(["read"], (await TestServer.ReadJsonAsync(signIn)).GetProperty("scopes").EnumerateArray().Select(s => s.GetString()));
        var cookies = signIn.Headers.GetValues("Set-Cookie").ToArray();
        string Value(string name) => cookies.Single(c => c.StartsWith(name + "=", StringComparison.Ordinal)).Split(';')[0][(name.Length + 1)..];

        using var read = new HttpRequestMessage(HttpMethod.Get, "/api/v1/queues");
        read.Headers.Add("Cookie", $"conveyor_session={Value("conveyor_session")}");
        using var readAnswer = await client.SendAsync(read);
        using var pause = new HttpRequestMessage(HttpMethod.Post, "/api/v1/queues/default/pause");
        pause.Headers.Add("Cookie", $"conveyor_session={Value("conveyor_session")}");
        pause.Headers.Add("X-Conveyor-CSRF", Value("conveyor_csrf"));
        using var pauseAnswer = await client.SendAsync(pause);

        Assert.Equal(HttpStatusCode.OK, readAnswer.StatusCode);
        await AssertForbiddenForScopeAsync(pauseAnswer, ApiScopes.Admin);
    }

    private async Task<Guid> EnqueueAsAdminAsync(string queue)
    {
        using var response = await SendAsync(HttpMethod.Post, "/api/v1/tasks", AdminKey, $$"""{"task": "conveyor.noop", "queue": "{{queue}}"}""");
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        return (await TestServer.ReadJsonAsync(response)).GetProperty("id").GetGuid();
    }
}

/// <summary>Wrong keys from one address are answered 429 with Retry-After once past the limit, right keys included.</summary>
public sealed class FailedAuthTests
{
    [Fact]
    public async Task Repeated_wrong_keys_from_one_address_get_429_with_retry_after()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?>
        {
            ["Conveyor:ApiKeys"] = KeyedServerFixture.FirstKey,
            ["Conveyor:FailedAuthLimit"] = "3",
            ["Conveyor:FailedAuthWindow"] = "00:10:00",
        });
        async Task<HttpResponseMessage> CallAsync(string key)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/queues");
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
            return await server.Client.SendAsync(request);
        }

        using (var right = await CallAsync(KeyedServerFixture.FirstKey))
        {
            Assert.Equal(HttpStatusCode.OK, right.StatusCode);
        }
        for (var i = 0; i < 3; i++)
        {
            using var wrong = await CallAsync($"wrong-key-{i}-0123456789abcdefghijklmnopq");
            await ApiValidationTests.AssertProblemAsync(wrong, HttpStatusCode.Unauthorized);
        }
        using var limited = await CallAsync("wrong-key-x-0123456789abcdefghijklmnopq");
        using var evenRight = await CallAsync(KeyedServerFixture.FirstKey);
        using var signIn = await server.PostJsonAsync("/api/v1/session", $$"""{"key": "{{KeyedServerFixture.FirstKey}}"}""");

        await ApiValidationTests.AssertProblemAsync(limited, HttpStatusCode.TooManyRequests);
        Assert.InRange(limited.Headers.RetryAfter!.Delta!.Value, TimeSpan.FromSeconds(1), TimeSpan.FromMinutes(10));
        await ApiValidationTests.AssertProblemAsync(evenRight, HttpStatusCode.TooManyRequests);
        await ApiValidationTests.AssertProblemAsync(signIn, HttpStatusCode.TooManyRequests);
    }
}

/// <summary>Configured keys that cannot be used stop the server at start, naming the setting and never the key.</summary>
public sealed class ConfiguredKeyValidationTests : IDisposable
{
    private readonly string _folder = TempFolder.Create();

    public void Dispose() => TempFolder.Delete(_folder);

    [Fact]
    public void A_short_key_is_refused_naming_the_setting_not_the_key()
    {
        var exception = Assert.Throws<ConveyorConfigurationException>(() => ConveyorHosts.BuildServer(
            new Dictionary<string, string?> { ["Conveyor:Port"] = "0" },
            new Dictionary<string, string?> { ["CONVEYOR_API_KEYS"] = "long-enough-key-0123456789abcdefghijk,hunter2" }));

        Assert.Contains("CONVEYOR_API_KEYS, item 2", exception.Message, StringComparison.Ordinal);
        Assert.Contains("at least 32", exception.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("hunter2", exception.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("key-0123456789abcdefghijklmnopqrstuvw scopes=write", "line 1", "scopes")]
    [InlineData("# c\nkey-0123456789abcdefghijklmnopqrstuvw color=red", "line 2", "only 'scopes=")]
    [InlineData("short scopes=read", "line 1", "at least 32")]
    public void A_bad_key_file_line_is_refused_naming_the_line(string content, string line, string message)
    {
        var file = Path.Combine(_folder, "keys");
        File.WriteAllText(file, content);

        var exception = Assert.Throws<ConveyorConfigurationException>(() => ConveyorHosts.BuildServer(
            new Dictionary<string, string?> { ["Conveyor:Port"] = "0" },
            new Dictionary<string, string?> { ["CONVEYOR_API_KEY_FILE"] = file }));

        Assert.Contains(line, exception.Message, StringComparison.Ordinal);
        Assert.Contains(message, exception.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_missing_key_file_is_refused_naming_the_setting()
    {
        var exception = Assert.Throws<ConveyorConfigurationException>(() => ConveyorHosts.BuildServer(
            new Dictionary<string, string?> { ["Conveyor:Port"] = "0" },
            new Dictionary<string, string?> { ["CONVEYOR_API_KEY_FILE"] = Path.Combine(_folder, "missing") }));

        Assert.Contains("Conveyor:ApiKeyFile", exception.Message, StringComparison.Ordinal);
    }
}
