using System.Net;
using System.Net.Http.Headers;

namespace Conveyor.Server.Tests;

public sealed class KeyedServerFixture : ServerFixture
{
    public const string FirstKey = "first-key-0123456789abcdefghijklmnop";
    public const string SecondKey = "second-key-0123456789abcdefghijklmno";

    protected override IReadOnlyDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Conveyor:ApiKeys"] = $"{FirstKey}, {SecondKey}",
        // Many tests here present wrong keys on purpose from one address; FailedAuthTests covers the limit.
        ["Conveyor:FailedAuthLimit"] = "100000",
    };
}

public sealed class ApiKeyTests(KeyedServerFixture fixture) : IClassFixture<KeyedServerFixture>
{
    private TestServer Server => fixture.Server;

    [Theory]
    [InlineData(null)]
    [InlineData("Bearer wrong-key")]
    [InlineData("Bearer first-key-0123456789abcdefghijklmnop-but-longer")]
    [InlineData("Basic Zmlyc3Qta2V5LTAxMjM0NTY3ODlhYmNkZWZnaGlqa2xtbm9w")]
    [InlineData("first-key-0123456789abcdefghijklmnop")]
    public async Task Api_call_without_a_valid_key_is_401_problem(string? authorization)
    {
        foreach (var path in new[] { "/api/v1/queues", "/api/v1/workers", "/api/v1/tasks" })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, path);
            if (authorization is not null)
            {
                request.Headers.TryAddWithoutValidation("Authorization", authorization);
            }
            using var response = await Server.Client.SendAsync(request);

            await ApiValidationTests.AssertProblemAsync(response, HttpStatusCode.Unauthorized);
            Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
        }
    }

    [Fact]
    public async Task Metrics_need_a_key_when_keys_are_configured()
    {
        using (var anonymous = await Server.Client.GetAsync("/metrics"))
        {
            await ApiValidationTests.AssertProblemAsync(anonymous, HttpStatusCode.Unauthorized);
        }
        using var request = new HttpRequestMessage(HttpMethod.Get, "/metrics");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", KeyedServerFixture.SecondKey);
        using var response = await Server.Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("text/plain", response.Content.Headers.ContentType?.MediaType, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Enqueue_without_a_key_is_401_and_stores_nothing()
    {
        using var response = await Server.PostJsonAsync("/api/v1/tasks", """{"task": "conveyor.noop"}""");

        await ApiValidationTests.AssertProblemAsync(response, HttpStatusCode.Unauthorized);
        using var count = new HttpRequestMessage(HttpMethod.Get, "/api/v1/tasks");
        count.Headers.Authorization = new AuthenticationHeaderValue("Bearer", KeyedServerFixture.FirstKey);
        using var list = await Server.Client.SendAsync(count);
        Assert.Empty((await TestServer.ReadJsonAsync(list)).GetProperty("items").EnumerateArray());
    }

    [Theory]
    [InlineData(KeyedServerFixture.FirstKey)]
    [InlineData(KeyedServerFixture.SecondKey)]
    public async Task Api_call_with_any_configured_key_succeeds(string key)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/queues");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);

        using var response = await Server.Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Theory]
    [InlineData("/health/live")]
    [InlineData("/health/ready")]
    [InlineData("/openapi/v1.json")]
    public async Task Health_and_openapi_need_no_key(string path)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        HttpStatusCode status;
        do
        {
            // Readiness waits for the worker to start; the others answer at once.
            using var response = await Server.Client.GetAsync(path);
            status = response.StatusCode;
            if (status == HttpStatusCode.OK)
            {
                break;
            }
            await Task.Delay(25);
        }
        while (DateTime.UtcNow < deadline);

        Assert.Equal(HttpStatusCode.OK, status);
    }
}
