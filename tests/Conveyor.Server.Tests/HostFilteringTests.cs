using System.Net;
using System.Net.Http.Headers;
using Conveyor.Server.Configuration;
using Conveyor.Server.Hosting;

namespace Conveyor.Server.Tests;

/// <summary>DNS rebinding: a server without keys answers only the loopback names as <c>Host</c>; with keys, any host unless
/// <c>ALLOWED_HOSTS</c> names them. A refused host is a 400 with problem details, before any key is looked at.</summary>
public sealed class HostFilteringTests(OpenServerFixture open, KeyedServerFixture keyed) : IClassFixture<OpenServerFixture>, IClassFixture<KeyedServerFixture>
{
    private static async Task<HttpResponseMessage> SendAsync(TestServer server, HttpMethod method, string path, string host, string? key = null, string? json = null)
    {
        using var request = new HttpRequestMessage(method, path);
        request.Headers.Host = host;
        if (key is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        }
        if (json is not null)
        {
            request.Content = new StringContent(json, System.Text.Encoding.UTF8, "application/json");
        }
        return await server.Client.SendAsync(request);
    }

    [Theory]
    [InlineData("attacker.example")]
    [InlineData("attacker.example:8000")]
    [InlineData("127.0.0.1.nip.io")]
    [InlineData("localhost.attacker.example")]
    public async Task Keyless_server_refuses_a_foreign_host_with_400_problem_and_stores_nothing(string host)
    {
        var before = await open.Server.CountTasksAsync();

        using var enqueue = await SendAsync(open.Server, HttpMethod.Post, "/api/v1/tasks", host, json: """{"task": "conveyor.noop"}""");
        using var read = await SendAsync(open.Server, HttpMethod.Get, "/api/v1/queues", host);
        using var dashboard = await SendAsync(open.Server, HttpMethod.Get, "/", host);

        await ApiValidationTests.AssertProblemAsync(enqueue, HttpStatusCode.BadRequest);
        await ApiValidationTests.AssertProblemAsync(read, HttpStatusCode.BadRequest);
        Assert.Equal(HttpStatusCode.BadRequest, dashboard.StatusCode);
        Assert.Equal(before, await open.Server.CountTasksAsync());
    }

    [Theory]
    [InlineData("localhost")]
    [InlineData("LOCALHOST")]
    [InlineData("127.0.0.1")]
    [InlineData("[::1]")]
    public async Task Keyless_server_answers_the_loopback_names_on_any_port(string name)
    {
        foreach (var host in new[] { name, $"{name}:{open.Server.BaseAddress.Port}", $"{name}:1" })
        {
            using var response = await SendAsync(open.Server, HttpMethod.Get, "/api/v1/queues", host);

            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
    }

    [Fact]
    public async Task Server_with_keys_and_no_allowed_hosts_answers_any_host_and_still_needs_the_key()
    {
        using var anonymous = await SendAsync(keyed.Server, HttpMethod.Get, "/api/v1/queues", "conveyor.example.com");
        using var withKey = await SendAsync(keyed.Server, HttpMethod.Get, "/api/v1/queues", "conveyor.example.com", KeyedServerFixture.FirstKey);

        await ApiValidationTests.AssertProblemAsync(anonymous, HttpStatusCode.Unauthorized);
        Assert.Equal(HttpStatusCode.OK, withKey.StatusCode);
    }

    [Fact]
    public async Task Allowed_hosts_admit_those_names_and_subdomains_and_the_loopback_names_only()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?>
        {
            ["Conveyor:ApiKeys"] = KeyedServerFixture.FirstKey,
            ["Conveyor:AllowedHosts"] = "conveyor.example.com, *.jobs.example.com",
        });

        foreach (var host in new[] { "conveyor.example.com", "conveyor.example.com:443", "a.jobs.example.com", "localhost:8000" })
        {
            using var response = await SendAsync(server, HttpMethod.Get, "/api/v1/queues", host, KeyedServerFixture.FirstKey);
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{host}: {(int)response.StatusCode}");
        }
        foreach (var host in new[] { "attacker.example", "jobs.example.com", "example.com" })
        {
            using var response = await SendAsync(server, HttpMethod.Get, "/api/v1/queues", host, KeyedServerFixture.FirstKey);
            await ApiValidationTests.AssertProblemAsync(response, HttpStatusCode.BadRequest);
        }
    }

    [Theory]
    [InlineData("https://conveyor.example.com")]
    [InlineData("conveyor.example.com:8000")]
    [InlineData("conveyor.example.com/api")]
    [InlineData("::1")]
    [InlineData("bad_host!")]
    public void A_malformed_allowed_host_stops_the_server_naming_the_setting(string entry)
    {
        var exception = Assert.Throws<ConveyorConfigurationException>(() => ConveyorHosts.BuildServer(
            new Dictionary<string, string?> { ["Conveyor:Port"] = "0" },
            new Dictionary<string, string?> { ["ALLOWED_HOSTS"] = "ok.example.com," + entry }));

        Assert.Contains("ALLOWED_HOSTS", exception.Message, StringComparison.Ordinal);
        Assert.Contains($"'{entry}'", exception.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Allowed_hosts_default_to_the_loopback_names_without_keys_and_any_with_them()
    {
        Assert.Equal(["localhost", "127.0.0.1", "[::1]"], ListenAddress.AllowedHosts([], keysConfigured: false));
        Assert.Equal(["*"], ListenAddress.AllowedHosts([], keysConfigured: true));
        Assert.Equal(["localhost", "127.0.0.1", "[::1]", "a.example.com"], ListenAddress.AllowedHosts(["a.example.com", "localhost"], keysConfigured: false));
    }
}
