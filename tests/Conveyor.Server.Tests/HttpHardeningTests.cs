using System.Net;
using Conveyor.Server.Configuration;
using Conveyor.Server.Hosting;

namespace Conveyor.Server.Tests;

/// <summary>Security headers on every answer, CORS closed unless origins are configured, and the API's rate limit.</summary>
public sealed class HttpHardeningTests(OpenServerFixture open) : IClassFixture<OpenServerFixture>
{
    [Fact]
    public async Task Api_answers_carry_the_security_headers_and_the_dashboard_keeps_its_own_policy()
    {
        using var api = await open.Server.Client.GetAsync("/api/v1/queues");
        using var problem = await open.Server.Client.GetAsync($"/api/v1/tasks/{Guid.NewGuid()}");
        using var page = await open.Server.Client.GetAsync("/");

        foreach (var response in new[] { api, problem, page })
        {
            Assert.Equal("nosniff", response.Headers.GetValues("X-Content-Type-Options").Single());
            Assert.Equal("DENY", response.Headers.GetValues("X-Frame-Options").Single());
            Assert.Single(response.Headers.GetValues("Referrer-Policy"));
            Assert.Contains("frame-ancestors 'none'", response.Headers.GetValues("Content-Security-Policy").Single(), StringComparison.Ordinal);
        }
        Assert.Equal("default-src 'none'; frame-ancestors 'none'", api.Headers.GetValues("Content-Security-Policy").Single());
        Assert.Equal("no-referrer", api.Headers.GetValues("Referrer-Policy").Single());
        Assert.Contains("script-src 'self'", page.Headers.GetValues("Content-Security-Policy").Single(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Cors_is_closed_without_configured_origins()
    {
        using var preflight = new HttpRequestMessage(HttpMethod.Options, "/api/v1/tasks");
        preflight.Headers.Add("Origin", "https://app.example.com");
        preflight.Headers.Add("Access-Control-Request-Method", "POST");
        using var response = await open.Server.Client.SendAsync(preflight);

        Assert.False(response.Headers.Contains("Access-Control-Allow-Origin"));
    }

    [Fact]
    public async Task Configured_origins_get_cors_and_may_change_state()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?> { ["Conveyor:Cors:Origins"] = "https://app.example.com" });
        using var preflight = new HttpRequestMessage(HttpMethod.Options, "/api/v1/tasks");
        preflight.Headers.Add("Origin", "https://app.example.com");
        preflight.Headers.Add("Access-Control-Request-Method", "POST");
        using var preflightAnswer = await server.Client.SendAsync(preflight);
        using var enqueue = new HttpRequestMessage(HttpMethod.Post, "/api/v1/tasks")
        {
            Content = new StringContent("""{"task": "conveyor.noop"}""", System.Text.Encoding.UTF8, "application/json"),
        };
        enqueue.Headers.Add("Origin", "https://app.example.com");
        using var enqueueAnswer = await server.Client.SendAsync(enqueue);
        using var other = new HttpRequestMessage(HttpMethod.Post, "/api/v1/tasks")
        {
            Content = new StringContent("""{"task": "conveyor.noop"}""", System.Text.Encoding.UTF8, "application/json"),
        };
        other.Headers.Add("Origin", "https://evil.example.com");
        using var otherAnswer = await server.Client.SendAsync(other);

        Assert.Equal("https://app.example.com", preflightAnswer.Headers.GetValues("Access-Control-Allow-Origin").Single());
        Assert.Equal(HttpStatusCode.Created, enqueueAnswer.StatusCode);
        Assert.Equal("https://app.example.com", enqueueAnswer.Headers.GetValues("Access-Control-Allow-Origin").Single());
        await ApiValidationTests.AssertProblemAsync(otherAnswer, HttpStatusCode.Forbidden);
        Assert.False(otherAnswer.Headers.Contains("Access-Control-Allow-Origin"));
    }

    [Fact]
    public async Task Past_the_rate_limit_an_address_gets_429_with_retry_after()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?>
        {
            ["Conveyor:RateLimit:PermitsPerSecond"] = "1",
            ["Conveyor:RateLimit:Burst"] = "3",
        });
        var statuses = new List<HttpStatusCode>();
        HttpResponseMessage? limited = null;
        for (var i = 0; i < 20 && limited is null; i++)
        {
            var response = await server.Client.GetAsync("/api/v1/queues");
            statuses.Add(response.StatusCode);
            if (response.StatusCode == HttpStatusCode.TooManyRequests)
            {
                limited = response;
            }
            else
            {
                response.Dispose();
            }
        }

        Assert.True(limited is not null, $"no 429 in {string.Join(", ", statuses)}");
        using (limited)
        {
            await ApiValidationTests.AssertProblemAsync(limited, HttpStatusCode.TooManyRequests);
            Assert.True(limited.Headers.RetryAfter?.Delta is { TotalSeconds: >= 1 }, $"Retry-After: {limited.Headers.RetryAfter}");
        }
        Assert.All(statuses.Take(3), s => Assert.Equal(HttpStatusCode.OK, s));
    }

    [Theory]
    [InlineData("Conveyor:Cors:Origins", "https://app.example.com/", "Conveyor:Cors:Origins")]
    [InlineData("Conveyor:Cors:Origins", "app.example.com", "Conveyor:Cors:Origins")]
    [InlineData("Conveyor:RateLimit:Burst", "0", "Conveyor:RateLimit")]
    public void A_bad_setting_stops_the_server_naming_it(string key, string value, string named)
    {
        var exception = Assert.Throws<ConveyorConfigurationException>(() => ConveyorHosts.BuildServer(
            new Dictionary<string, string?> { ["Conveyor:Port"] = "0", [key] = value },
            new Dictionary<string, string?>()));

        Assert.Contains(named, exception.Message, StringComparison.Ordinal);
    }
}
