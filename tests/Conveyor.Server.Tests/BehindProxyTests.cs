using System.Net;
using System.Net.Http.Headers;

namespace Conveyor.Server.Tests;

/// <summary><c>--behind-proxy</c>: <c>X-Forwarded-For</c>, <c>-Proto</c> and <c>-Host</c> are believed from the known
/// proxies only (loopback by default; the tests' client connects from 127.0.0.1), so the failed-key limiter, the rate
/// limiter, host filtering and HSTS see the client a proxy forwards; from any other address they are ignored.</summary>
public sealed class BehindProxyTests : IDisposable
{
    private const string Key = "proxy-test-key-0123456789abcdefghijklmno";
    private readonly string _folder = TempFolder.Create();

    private Dictionary<string, string> Environment => new()
    {
        ["DATABASE_URL"] = "sqlite:///" + Path.Combine(_folder, "proxy.db"),
        ["LOG_LEVEL"] = "warning",
        ["CONVEYOR_API_KEYS"] = Key,
        ["CONVEYOR_RUN_WORKER"] = "false",
    };

    public void Dispose() => TempFolder.Delete(_folder);

    private static async Task<HttpStatusCode> CallAsync(HttpClient client, string key, string? forwardedFor)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/queues");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        if (forwardedFor is not null)
        {
            request.Headers.Add("X-Forwarded-For", forwardedFor);
        }
        using var response = await client.SendAsync(request);
        return response.StatusCode;
    }

    /// <summary>What an address gets for 11 wrong keys in a minute: 10 answered 401 (Conveyor:FailedAuthLimit), then 429.</summary>
    private static readonly HttpStatusCode[] TenWrongKeysThen429 = [.. Enumerable.Repeat(HttpStatusCode.Unauthorized, 10), HttpStatusCode.TooManyRequests];

    private static string WrongKey(int i) => $"wrong-key-{i:D4}-0123456789abcdefghijklmnop";

    [Fact]
    public async Task Failed_keys_are_counted_per_forwarded_address_from_a_known_proxy()
    {
        using var server = await ServerProcess.StartAsync(_folder, Environment, "--port", "0", "--behind-proxy");
        using var client = server.CreateClient();
        var first = new List<HttpStatusCode>();
        var second = new List<HttpStatusCode>();

        // Each address has its own 10 wrong keys a minute (Conveyor:FailedAuthLimit, default): the 11th is refused.
        for (var i = 0; i < 11; i++)
        {
            first.Add(await CallAsync(client, WrongKey(i), "203.0.113.1"));
        }
        for (var i = 0; i < 11; i++)
        {
            second.Add(await CallAsync(client, WrongKey(100 + i), "203.0.113.2"));
        }
        var blockedWithTheRightKey = await CallAsync(client, Key, "203.0.113.1");
        var proxyItself = await CallAsync(client, Key, null);
        var third = await CallAsync(client, Key, "198.51.100.7");

        Assert.Equal(TenWrongKeysThen429, first);
        Assert.Equal(TenWrongKeysThen429, second);
        Assert.Equal(HttpStatusCode.TooManyRequests, blockedWithTheRightKey);
        Assert.Equal(HttpStatusCode.OK, proxyItself);
        Assert.Equal(HttpStatusCode.OK, third);
        Assert.Contains("behind a proxy, forwarded headers from 127.0.0.0/8, ::1", server.Process.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Forwarded_for_from_an_address_that_is_not_a_known_proxy_is_ignored()
    {
        // The client connects from 127.0.0.1, which is not 192.0.2.10: its X-Forwarded-For is not believed.
        using var server = await ServerProcess.StartAsync(_folder, Environment, "--port", "0", "--behind-proxy", "--known-proxies", "192.0.2.10");
        using var client = server.CreateClient();
        var answers = new List<HttpStatusCode>();

        for (var i = 0; i < 11; i++)
        {
            answers.Add(await CallAsync(client, WrongKey(i), $"203.0.113.{i + 1}"));
        }
        var fresh = await CallAsync(client, Key, "198.51.100.7");

        Assert.Equal(TenWrongKeysThen429, answers);
        Assert.Equal(HttpStatusCode.TooManyRequests, fresh);
    }

    [Fact]
    public async Task Aspnetcore_forwardedheaders_enabled_does_not_make_the_server_believe_anyone()
    {
        // ASP.NET Core's own switch would put the middleware first with no known proxies: every X-Forwarded-For believed.
        var environment = new Dictionary<string, string>(Environment) { ["ASPNETCORE_FORWARDEDHEADERS_ENABLED"] = "true" };
        using var server = await ServerProcess.StartAsync(_folder, environment, "--port", "0");
        using var client = server.CreateClient();
        var answers = new List<HttpStatusCode>();

        for (var i = 0; i < 11; i++)
        {
            answers.Add(await CallAsync(client, WrongKey(i), $"203.0.113.{i + 1}"));
        }

        Assert.Equal(TenWrongKeysThen429, answers);
    }

    [Fact]
    public async Task A_clients_own_forwarded_for_left_of_what_its_proxy_appended_is_not_believed()
    {
        using var server = await ServerProcess.StartAsync(_folder, Environment, "--port", "0", "--behind-proxy");
        using var client = server.CreateClient();
        var answers = new List<HttpStatusCode>();

        // nginx's $proxy_add_x_forwarded_for appends the address it saw: "<whatever the client sent>, <client>".
        for (var i = 0; i < 11; i++)
        {
            answers.Add(await CallAsync(client, WrongKey(i), $"10.9.8.{i + 1}, 203.0.113.1"));
        }

        Assert.Equal(TenWrongKeysThen429, answers);
    }
}

/// <summary>The rest of what a known proxy forwards, against the in-process server: the API rate limiter per forwarded
/// address, the forwarded host in host filtering, the forwarded scheme for HSTS.</summary>
public sealed class ForwardedHeadersTests
{
    private const string Key = "proxy-test-key-0123456789abcdefghijklmno";

    private static Task<TestServer> StartAsync(Dictionary<string, string?> settings)
    {
        settings["Conveyor:ApiKeys"] = Key;
        settings["Conveyor:RunWorker"] = "false";
        return TestServer.StartAsync(settings);
    }

    private static async Task<HttpResponseMessage> SendAsync(TestServer server, params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/queues");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Key);
        foreach (var (name, value) in headers)
        {
            if (name == "Host")
            {
                request.Headers.Host = value;
            }
            else
            {
                request.Headers.Add(name, value);
            }
        }
        return await server.Client.SendAsync(request);
    }

    [Fact]
    public async Task The_api_rate_limiter_counts_the_forwarded_address()
    {
        await using var server = await StartAsync(new()
        {
            ["Conveyor:BehindProxy"] = "true",
            ["Conveyor:RateLimit:PermitsPerSecond"] = "1",
            ["Conveyor:RateLimit:Burst"] = "3",
        });

        // 3 at once, then 1 a second: 50 requests in a row cannot all pass unless they take 47 s.
        var limited = false;
        for (var i = 0; i < 50 && !limited; i++)
        {
            using var response = await SendAsync(server, ("X-Forwarded-For", "203.0.113.1"));
            limited = response.StatusCode == HttpStatusCode.TooManyRequests;
        }
        var other = new List<HttpStatusCode>();
        for (var i = 0; i < 3; i++)
        {
            using var response = await SendAsync(server, ("X-Forwarded-For", "203.0.113.2"));
            other.Add(response.StatusCode);
        }

        Assert.True(limited, "203.0.113.1 was never limited");
        Assert.Equal(new[] { HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK }, other);
    }

    [Fact]
    public async Task Host_filtering_sees_the_forwarded_host()
    {
        await using var server = await StartAsync(new()
        {
            ["Conveyor:BehindProxy"] = "true",
            ["Conveyor:AllowedHosts"] = "conveyor.example.com",
        });

        using var foreign = await SendAsync(server, ("Host", "127.0.0.1"), ("X-Forwarded-Host", "attacker.example"));
        using var allowed = await SendAsync(server, ("Host", "backend.internal"), ("X-Forwarded-Host", "conveyor.example.com"));
        using var direct = await SendAsync(server, ("Host", "backend.internal"));

        await ApiValidationTests.AssertProblemAsync(foreign, HttpStatusCode.BadRequest);
        Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
        await ApiValidationTests.AssertProblemAsync(direct, HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task Hsts_is_sent_when_a_known_proxy_forwards_https_and_not_otherwise()
    {
        await using var known = await StartAsync(new() { ["Conveyor:BehindProxy"] = "true" });
        await using var unknown = await StartAsync(new() { ["Conveyor:BehindProxy"] = "true", ["Conveyor:KnownProxies"] = "192.0.2.10" });

        using var https = await SendAsync(known, ("Host", "conveyor.example.com"), ("X-Forwarded-Proto", "https"));
        using var http = await SendAsync(known, ("Host", "conveyor.example.com"), ("X-Forwarded-Proto", "http"));
        using var untrusted = await SendAsync(unknown, ("Host", "conveyor.example.com"), ("X-Forwarded-Proto", "https"));

        Assert.Equal(HttpStatusCode.OK, https.StatusCode);
        Assert.Equal("max-age=31536000", Assert.Single(https.Headers.GetValues("Strict-Transport-Security")));
        Assert.False(http.Headers.Contains("Strict-Transport-Security"));
        Assert.Equal(HttpStatusCode.OK, untrusted.StatusCode);
        Assert.False(untrusted.Headers.Contains("Strict-Transport-Security"));
    }

    [Fact]
    public async Task Without_behind_proxy_forwarded_headers_are_ignored()
    {
        await using var server = await StartAsync(new()
        {
            ["Conveyor:AllowedHosts"] = "conveyor.example.com",
            ["Conveyor:FailedAuthLimit"] = "2",
        });

        using var forwardedHost = await SendAsync(server, ("Host", "conveyor.example.com"), ("X-Forwarded-Host", "attacker.example"));
        var wrong = new List<HttpStatusCode>();
        for (var i = 0; i < 3; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/queues");
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", $"wrong-key-{i}-0123456789abcdefghijklmnopq");
            request.Headers.Add("X-Forwarded-For", $"203.0.113.{i + 1}");
            using var response = await server.Client.SendAsync(request);
            wrong.Add(response.StatusCode);
        }

        Assert.Equal(HttpStatusCode.OK, forwardedHost.StatusCode);
        Assert.Equal(new[] { HttpStatusCode.Unauthorized, HttpStatusCode.Unauthorized, HttpStatusCode.TooManyRequests }, wrong);
    }
}
