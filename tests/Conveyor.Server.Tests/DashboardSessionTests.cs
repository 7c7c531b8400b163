using System.Net;
using System.Net.Http.Headers;
using System.Text;

namespace Conveyor.Server.Tests;

/// <summary>The dashboard's access rules: a key exchanged for a Secure, HttpOnly, SameSite=Strict session cookie;
/// state-changing calls by cookie need the CSRF token; cross-site state changes are refused with or without keys.</summary>
public sealed class DashboardSessionTests(KeyedServerFixture keyed, OpenServerFixture open) : IClassFixture<KeyedServerFixture>, IClassFixture<OpenServerFixture>
{
    private static HttpClient NewClient(TestServer server) =>
        new(new HttpClientHandler { UseCookies = false }) { BaseAddress = server.BaseAddress };

    private static async Task<(string Session, string Csrf, string[] SetCookies)> SignInAsync(HttpClient client, string key)
    {
        using var response = await client.PostAsync("/api/v1/session", new StringContent($$"""{"key": "{{key}}"}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var cookies = response.Headers.GetValues("Set-Cookie").ToArray();
        string Value(string name) => cookies.Single(c => c.StartsWith(name + "=", StringComparison.Ordinal)).Split(';')[0][(name.Length + 1)..];
        return (Value("conveyor_session"), Value("conveyor_csrf"), cookies);
    }

    private static HttpRequestMessage Request(HttpMethod method, string path, string? session, string? csrf = null, string? origin = null)
    {
        var request = new HttpRequestMessage(method, path);
        if (session is not null)
        {
            request.Headers.Add("Cookie", $"conveyor_session={session}");
        }
        if (csrf is not null)
        {
            request.Headers.Add("X-Conveyor-CSRF", csrf);
        }
        if (origin is not null)
        {
            request.Headers.Add("Origin", origin);
        }
        return request;
    }

    [Fact]
    public async Task Session_says_whether_a_key_is_needed_and_whether_the_caller_has_one()
    {
        using var client = NewClient(keyed.Server);
        Assert.Equal("""{"keysRequired":true,"authenticated":false,"scopes":[]}""", await client.GetStringAsync("/api/v1/session"));
        using var openClient = NewClient(open.Server);
        Assert.Equal("""{"keysRequired":false,"authenticated":true,"scopes":["read","enqueue","admin"]}""", await openClient.GetStringAsync("/api/v1/session"));
        var (session, _, _) = await SignInAsync(client, KeyedServerFixture.SecondKey);
        using var withCookie = Request(HttpMethod.Get, "/api/v1/session", session);
        using var answer = await client.SendAsync(withCookie);
        Assert.Equal("""{"keysRequired":true,"authenticated":true,"scopes":["admin"]}""", await answer.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task A_key_is_exchanged_for_a_secure_HttpOnly_SameSite_strict_cookie_that_opens_the_API()
    {
        using var client = NewClient(keyed.Server);
        var (session, csrf, cookies) = await SignInAsync(client, KeyedServerFixture.FirstKey);

        var sessionCookie = cookies.Single(c => c.StartsWith("conveyor_session=", StringComparison.Ordinal)).ToLowerInvariant();
        Assert.Contains("; secure", sessionCookie, StringComparison.Ordinal);
        Assert.Contains("; httponly", sessionCookie, StringComparison.Ordinal);
        Assert.Contains("; samesite=strict", sessionCookie, StringComparison.Ordinal);
        Assert.Contains("; path=/", sessionCookie, StringComparison.Ordinal);
        var csrfCookie = cookies.Single(c => c.StartsWith("conveyor_csrf=", StringComparison.Ordinal)).ToLowerInvariant();
        Assert.DoesNotContain("httponly", csrfCookie, StringComparison.Ordinal);
        Assert.Contains("; samesite=strict", csrfCookie, StringComparison.Ordinal);
        Assert.DoesNotContain(KeyedServerFixture.FirstKey, session, StringComparison.Ordinal);
        Assert.Contains(csrf, session, StringComparison.Ordinal);

        using var read = Request(HttpMethod.Get, "/api/v1/queues", session);
        using var readAnswer = await client.SendAsync(read);
        Assert.Equal(HttpStatusCode.OK, readAnswer.StatusCode);
        using var events = Request(HttpMethod.Get, "/api/v1/events", session);
        using var stream = await client.SendAsync(events, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, stream.StatusCode);
    }

    [Fact]
    public async Task A_wrong_key_or_a_forged_or_tampered_cookie_is_401()
    {
        using var client = NewClient(keyed.Server);
        using (var wrong = await client.PostAsync("/api/v1/session", new StringContent("""{"key": "third-key-0123456789abcdefghijklmnopq"}""", Encoding.UTF8, "application/json")))
        {
            await ApiValidationTests.AssertProblemAsync(wrong, HttpStatusCode.Unauthorized);
            Assert.False(wrong.Headers.Contains("Set-Cookie"));
        }
        using (var missing = await client.PostAsync("/api/v1/session", new StringContent("{}", Encoding.UTF8, "application/json")))
        {
            ApiValidationTests.AssertNamesField(await ApiValidationTests.AssertProblemAsync(missing, HttpStatusCode.UnprocessableEntity), "key");
        }
        var (session, _, _) = await SignInAsync(client, KeyedServerFixture.FirstKey);
        var parts = session.Split('.');
        Assert.Equal(4, parts.Length);
        var forgedExpiry = $"{long.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture) + 86_400 * 365}.{parts[1]}.{parts[2]}.{parts[3]}";
        var otherMac = $"{parts[0]}.{parts[1]}.{parts[2]}.{new string(parts[3].Reverse().ToArray())}";
        var expired = $"1000.{parts[1]}.{parts[2]}.{parts[3]}";
        var otherKey = $"{parts[0]}.{parts[1]}.config-00000000.{parts[3]}";
        foreach (var bad in new[] { forgedExpiry, otherMac, expired, otherKey, "garbage", "1.2" })
        {
            using var request = Request(HttpMethod.Get, "/api/v1/queues", bad);
            using var response = await client.SendAsync(request);
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        }
    }

    [Fact]
    public async Task A_state_change_by_cookie_needs_the_CSRF_token_of_its_session()
    {
        using var client = NewClient(keyed.Server);
        var (session, csrf, _) = await SignInAsync(client, KeyedServerFixture.FirstKey);
        var (_, otherCsrf, _) = await SignInAsync(client, KeyedServerFixture.FirstKey);

        foreach (var token in new string?[] { null, "", otherCsrf, csrf + "x" })
        {
            using var request = Request(HttpMethod.Post, "/api/v1/queues/csrf-queue/pause", session, token);
            using var response = await client.SendAsync(request);
            await ApiValidationTests.AssertProblemAsync(response, HttpStatusCode.Forbidden);
        }
        using (var request = Request(HttpMethod.Post, "/api/v1/queues/csrf-queue/pause", session, csrf))
        using (var response = await client.SendAsync(request))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        // A bearer key needs no token: no browser sends it by itself.
        using var bearer = new HttpRequestMessage(HttpMethod.Post, "/api/v1/queues/csrf-queue/resume");
        bearer.Headers.Authorization = new AuthenticationHeaderValue("Bearer", KeyedServerFixture.FirstKey);
        using var bearerAnswer = await client.SendAsync(bearer);
        Assert.Equal(HttpStatusCode.OK, bearerAnswer.StatusCode);
    }

    [Theory]
    [InlineData("http://evil.example", null)]
    [InlineData("null", null)]
    [InlineData(null, "cross-site")]
    public async Task A_cross_site_state_change_is_refused_even_without_keys(string? origin, string? fetchSite)
    {
        using var client = NewClient(open.Server);
        var id = await open.Server.EnqueueAsync(new { task = "conveyor.noop", queue = "cross-site-held" });

        using var request = Request(HttpMethod.Post, $"/api/v1/tasks/{id}/cancel", null, origin: origin);
        if (fetchSite is not null)
        {
            request.Headers.Add("Sec-Fetch-Site", fetchSite);
        }
        using var response = await client.SendAsync(request);

        await ApiValidationTests.AssertProblemAsync(response, HttpStatusCode.Forbidden);
        Assert.Equal("queued", (await open.Server.GetTaskAsync(id)).GetProperty("state").GetString());
        // Reads stay open to any origin's browser requests only as CORS allows (no CORS headers are sent).
        using var read = Request(HttpMethod.Get, $"/api/v1/tasks/{id}", null, origin: origin);
        using var readAnswer = await client.SendAsync(read);
        Assert.Equal(HttpStatusCode.OK, readAnswer.StatusCode);
    }

    [Fact]
    public async Task A_same_origin_or_non_browser_state_change_passes()
    {
        using var client = NewClient(open.Server);
        var first = await open.Server.EnqueueAsync(new { task = "conveyor.noop", queue = "same-origin-held" });
        var second = await open.Server.EnqueueAsync(new { task = "conveyor.noop", queue = "same-origin-held" });

        using var sameOrigin = Request(HttpMethod.Post, $"/api/v1/tasks/{first}/cancel", null, origin: open.Server.BaseAddress.GetLeftPart(UriPartial.Authority));
        sameOrigin.Headers.Add("Sec-Fetch-Site", "same-origin");
        using var sameOriginAnswer = await client.SendAsync(sameOrigin);
        Assert.Equal(HttpStatusCode.OK, sameOriginAnswer.StatusCode);
        using var cli = Request(HttpMethod.Post, $"/api/v1/tasks/{second}/cancel", null);
        using var cliAnswer = await client.SendAsync(cli);
        Assert.Equal(HttpStatusCode.OK, cliAnswer.StatusCode);
    }

    [Fact]
    public async Task Sign_out_removes_the_cookies()
    {
        using var client = NewClient(keyed.Server);
        using var response = await client.DeleteAsync("/api/v1/session");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var cookies = response.Headers.GetValues("Set-Cookie").ToArray();
        Assert.Contains(cookies, c => c.StartsWith("conveyor_session=;", StringComparison.Ordinal) && c.Contains("expires=Thu, 01 Jan 1970", StringComparison.OrdinalIgnoreCase));
        Assert.Contains(cookies, c => c.StartsWith("conveyor_csrf=;", StringComparison.Ordinal));
    }
}
