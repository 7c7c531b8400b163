using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Conveyor.Server.Tests;

/// <summary>The audit log through the HTTP API: admin actions, refusals and sign-ins recorded with who, what, to what, how
/// it ended and from where (the forwarded client behind a known proxy); never a key or an argument value; read through
/// <c>GET /api/v1/audit</c> with filters, paging and 400s naming the field.</summary>
public sealed class AuditApiTests : IAsyncLifetime
{
    private const string AdminKey = "audit-admin-key-0123456789abcdefghijklmn";
    private const string ReadKey = "audit-read-key-0123456789abcdefghijklmno";
    private const string WrongKey = "audit-wrong-key-0123456789abcdefghijklmn";
    private const string ArgumentValue = "argument-value-5f1c9e";
    private const string Client = "203.0.113.9";
    private readonly string _folder = TempFolder.Create();
    private TestServer _server = null!;

    public async Task InitializeAsync()
    {
        var file = Path.Combine(_folder, "keys");
        await File.WriteAllTextAsync(file, $"{ReadKey} scopes=read\n");
        _server = await TestServer.StartAsync(new Dictionary<string, string?>
        {
            ["Conveyor:ApiKeys"] = AdminKey,
            ["Conveyor:ApiKeyFile"] = file,
            ["Conveyor:FailedAuthLimit"] = "100000",
            // The test client connects from loopback, a known proxy by default: X-Forwarded-For is believed.
            ["Conveyor:BehindProxy"] = "true",
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
        request.Headers.Add("X-Forwarded-For", Client);
        request.Headers.UserAgent.ParseAdd("audit-test/1.0");
        if (json is not null)
        {
            request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        }
        return await _server.Client.SendAsync(request);
    }

    private async Task<(List<JsonElement> Entries, string? Next, string Text)> AuditAsync(string query = "")
    {
        using var response = await SendAsync(HttpMethod.Get, "/api/v1/audit" + query, AdminKey);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        using var document = JsonDocument.Parse(text);
        var root = document.RootElement.Clone();
        var next = root.GetProperty("nextCursor");
        return (root.GetProperty("entries").EnumerateArray().ToList(), next.ValueKind == JsonValueKind.Null ? null : next.GetString(), text);
    }

    private static JsonElement Single(List<JsonElement> entries, string action) =>
        Assert.Single(entries, e => e.GetProperty("action").GetString() == action);

    private static void AssertEntry(JsonElement entry, string actorKind, string? target, string outcome, int status)
    {
        Assert.Equal(actorKind, entry.GetProperty("actorKind").GetString());
        Assert.Equal(target, entry.GetProperty("target").GetString());
        Assert.Equal(outcome, entry.GetProperty("outcome").GetString());
        Assert.Equal(status, entry.GetProperty("status").GetInt32());
        Assert.Equal(Client, entry.GetProperty("remoteAddress").GetString());
        Assert.Equal("audit-test/1.0", entry.GetProperty("userAgent").GetString());
        Assert.True(entry.GetProperty("at").GetDateTimeOffset() > DateTimeOffset.UtcNow.AddMinutes(-5));
    }

    [Fact]
    public async Task Admin_actions_refusals_and_sign_ins_are_recorded_without_secrets()
    {
        Guid taskId;
        using (var enqueued = await SendAsync(HttpMethod.Post, "/api/v1/tasks", AdminKey,
            $$$"""{"task": "conveyor.noop", "queue": "held", "args": {"token": "{{{ArgumentValue}}}"}}"""))
        {
            Assert.True(enqueued.StatusCode == HttpStatusCode.Created, await enqueued.Content.ReadAsStringAsync());
            taskId = (await TestServer.ReadJsonAsync(enqueued)).GetProperty("id").GetGuid();
        }
        using (var cancel = await SendAsync(HttpMethod.Post, $"/api/v1/tasks/{taskId}/cancel", AdminKey))
        {
            Assert.Equal(HttpStatusCode.OK, cancel.StatusCode);
        }
        using (var missing = await SendAsync(HttpMethod.Post, $"/api/v1/tasks/{Guid.CreateVersion7()}/cancel", AdminKey))
        {
            Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        }
        using (var pause = await SendAsync(HttpMethod.Post, "/api/v1/queues/held/pause", AdminKey))
        {
            Assert.Equal(HttpStatusCode.OK, pause.StatusCode);
        }
        string createdKey, createdId;
        using (var created = await SendAsync(HttpMethod.Post, "/api/v1/keys", AdminKey, """{"name": "ops", "scopes": ["read"]}"""))
        {
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
            var body = await TestServer.ReadJsonAsync(created);
            createdKey = body.GetProperty("key").GetString()!;
            createdId = body.GetProperty("id").GetString()!;
        }
        using (var forbidden = await SendAsync(HttpMethod.Post, "/api/v1/queues/held/resume", ReadKey))
        {
            Assert.Equal(HttpStatusCode.Forbidden, forbidden.StatusCode);
        }
        using (var anonymous = await SendAsync(HttpMethod.Post, "/api/v1/tasks/purge", null, """{"state": "dead", "all": true}"""))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        }
        using (var failedSignIn = await SendAsync(HttpMethod.Post, "/api/v1/session", null, $$"""{"key": "{{WrongKey}}"}"""))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, failedSignIn.StatusCode);
        }
        string sessionCookie;
        using (var signIn = await SendAsync(HttpMethod.Post, "/api/v1/session", null, $$"""{"key": "{{createdKey}}"}"""))
        {
            Assert.Equal(HttpStatusCode.OK, signIn.StatusCode);
            sessionCookie = signIn.Headers.GetValues("Set-Cookie").Single(c => c.StartsWith("conveyor_session=", StringComparison.Ordinal)).Split(';')[0];
        }
        using (var signOut = new HttpRequestMessage(HttpMethod.Delete, "/api/v1/session"))
        {
            signOut.Headers.Add("Cookie", sessionCookie);
            signOut.Headers.Add("X-Forwarded-For", Client);
            signOut.Headers.UserAgent.ParseAdd("audit-test/1.0");
            using var response = await _server.Client.SendAsync(signOut);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        // Reads are not recorded.
        using (var read = await SendAsync(HttpMethod.Get, "/api/v1/keys", AdminKey))
        {
            Assert.Equal(HttpStatusCode.OK, read.StatusCode);
        }

        var (entries, _, text) = await AuditAsync();

        var cancelled = Assert.Single(entries, e => e.GetProperty("action").GetString() == "task.cancel" && e.GetProperty("status").GetInt32() == 200);
        var adminActor = cancelled.GetProperty("actor").GetString()!;
        Assert.StartsWith("config-", adminActor, StringComparison.Ordinal);
        AssertEntry(cancelled, "api-key", taskId.ToString(), "ok", 200);
        var failedCancel = Assert.Single(entries, e => e.GetProperty("action").GetString() == "task.cancel" && e.GetProperty("status").GetInt32() == 404);
        Assert.Equal("failed", failedCancel.GetProperty("outcome").GetString());
        AssertEntry(Single(entries, "queue.pause"), "api-key", "held", "ok", 200);
        var keyCreated = Single(entries, "key.create");
        AssertEntry(keyCreated, "api-key", createdId, "ok", 201);
        Assert.Equal(["read"], keyCreated.GetProperty("details").GetProperty("scopes").EnumerateArray().Select(s => s.GetString()));
        var refused = Single(entries, "queue.resume");
        AssertEntry(refused, "api-key", "held", "refused", 403);
        Assert.NotEqual(adminActor, refused.GetProperty("actor").GetString());
        var unauthenticated = Single(entries, "tasks.purge");
        AssertEntry(unauthenticated, "anonymous", null, "refused", 401);
        Assert.Equal("anonymous", unauthenticated.GetProperty("actor").GetString());
        AssertEntry(Single(entries, "session.sign-in-failed"), "anonymous", null, "refused", 401);
        var signedIn = Single(entries, "session.sign-in");
        AssertEntry(signedIn, "session", null, "ok", 200);
        Assert.Equal(createdId, signedIn.GetProperty("actor").GetString());
        var signedOut = Single(entries, "session.sign-out");
        AssertEntry(signedOut, "session", null, "ok", 200);
        Assert.Equal(createdId, signedOut.GetProperty("actor").GetString());
        Assert.DoesNotContain(entries, e => e.GetProperty("action").GetString() == "key.list");
        Assert.Equal(entries.Select(e => e.GetProperty("at").GetDateTimeOffset()).OrderDescending(), entries.Select(e => e.GetProperty("at").GetDateTimeOffset()));
        foreach (var secret in new[] { AdminKey, ReadKey, WrongKey, createdKey, ArgumentValue, sessionCookie.Split('=', 2)[1] })
        {
            Assert.DoesNotContain(secret, text, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task The_list_filters_pages_and_names_the_bad_field()
    {
        foreach (var queue in new[] { "q1", "q2", "q3" })
        {
            using var pause = await SendAsync(HttpMethod.Post, $"/api/v1/queues/{queue}/pause", AdminKey);
            Assert.Equal(HttpStatusCode.OK, pause.StatusCode);
        }
        using (var forbidden = await SendAsync(HttpMethod.Post, "/api/v1/queues/q1/resume", ReadKey))
        {
            Assert.Equal(HttpStatusCode.Forbidden, forbidden.StatusCode);
        }
        var all = (await AuditAsync()).Entries;
        var readActor = Single(all, "queue.resume").GetProperty("actor").GetString()!;

        var paused = (await AuditAsync("?action=queue.pause")).Entries;
        Assert.Equal(["q3", "q2", "q1"], paused.Select(e => e.GetProperty("target").GetString()));
        Assert.Equal(["queue.resume"], (await AuditAsync("?actor=" + Uri.EscapeDataString(readActor))).Entries.Select(e => e.GetProperty("action").GetString()));
        var since = Uri.EscapeDataString(DateTimeOffset.UtcNow.AddMinutes(1).ToString("O"));
        Assert.Empty((await AuditAsync($"?since={since}")).Entries);
        Assert.Equal(4, (await AuditAsync($"?until={since}&action=queue.")).Entries.Count);

        var walked = new List<string?>();
        var (page, next, _) = await AuditAsync("?action=queue.pause&limit=2");
        walked.AddRange(page.Select(e => e.GetProperty("target").GetString()));
        Assert.NotNull(next);
        (page, next, _) = await AuditAsync($"?action=queue.pause&limit=2&cursor={next}");
        walked.AddRange(page.Select(e => e.GetProperty("target").GetString()));
        Assert.Null(next);
        Assert.Equal(["q3", "q2", "q1"], walked);

        foreach (var (query, field) in new[] { ("since=yesterday", "since"), ("until=2026-13-01", "until"), ("limit=0", "limit"), ("limit=501", "limit"),
            ("limit=ten", "limit"), ("cursor=nope", "cursor"), ("since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", "until") })
        {
            using var bad = await SendAsync(HttpMethod.Get, "/api/v1/audit?" + query, AdminKey);
            var problem = await ApiValidationTests.AssertProblemAsync(bad, HttpStatusCode.BadRequest);
            Assert.True(problem.GetProperty("errors").TryGetProperty(field, out _), $"{query}: {problem}");
        }
        using var notAdmin = await SendAsync(HttpMethod.Get, "/api/v1/audit", ReadKey);
        await ApiValidationTests.AssertProblemAsync(notAdmin, HttpStatusCode.Forbidden);
        AssertEntry(Single((await AuditAsync("?action=audit.")).Entries, "audit.list"), "api-key", null, "refused", 403);
    }
}

/// <summary>A server without keys records its (loopback-only) callers as <c>loopback</c>.</summary>
public sealed class OpenServerAuditTests
{
    [Fact]
    public async Task A_keyless_server_records_the_actor_as_loopback()
    {
        await using var server = await TestServer.StartAsync();
        using (var pause = await server.Client.PostAsync("/api/v1/queues/pausable/pause", null))
        {
            Assert.Equal(HttpStatusCode.OK, pause.StatusCode);
        }
        using var response = await server.Client.GetAsync("/api/v1/audit?action=queue.");
        var entry = Assert.Single((await TestServer.ReadJsonAsync(response)).GetProperty("entries").EnumerateArray());
        Assert.Equal("loopback", entry.GetProperty("actor").GetString());
        Assert.Equal("loopback", entry.GetProperty("actorKind").GetString());
        Assert.Equal("pausable", entry.GetProperty("target").GetString());
        Assert.Equal("127.0.0.1", entry.GetProperty("remoteAddress").GetString());
    }
}
