using System.Net;
using System.Text.Json;
using Conveyor.Server.Tasks;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Conveyor.Server.Tests;

/// <summary>A tiny HTTP endpoint on loopback for <c>http.request</c> to call.</summary>
public sealed class HttpTargetFixture : IAsyncLifetime
{
    private int _failures;
    private int _okHits;
    private WebApplication? _app;
    private TestServer? _server;

    public TestServer Server => _server!;
    public Uri Target { get; private set; } = null!;
    public int FailureHits => Volatile.Read(ref _failures);
    public int OkHits => Volatile.Read(ref _okHits);

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        _app = builder.Build();
        _app.MapGet("/ok", () =>
        {
            Interlocked.Increment(ref _okHits);
            return Results.Json(new { hello = "world" });
        });
        _app.MapPost("/echo", async (HttpRequest request) =>
            Results.Text(await new StreamReader(request.Body).ReadToEndAsync(), request.ContentType));
        _app.MapGet("/fail", () =>
        {
            Interlocked.Increment(ref _failures);
            return Results.StatusCode(500);
        });
        _app.MapGet("/missing", () => Results.NotFound());
        _app.MapGet("/large", () => Results.Text(new string('x', 100_000)));
        _app.MapGet("/slow", async (HttpContext http) =>
        {
            await Task.Delay(TimeSpan.FromSeconds(10), http.RequestAborted);
            return Results.Ok();
        });
        await _app.StartAsync();
        Target = new Uri(_app.Urls.First());
        _server = await TestServer.StartAsync(new Dictionary<string, string?>
        {
            ["Conveyor:Http:AllowedHosts"] = "127.0.0.1",
        });
    }

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }
}

public sealed class HttpRequestTaskTests(HttpTargetFixture fixture) : IClassFixture<HttpTargetFixture>
{
    private TestServer Server => fixture.Server;

    private string Url(string path) => new Uri(fixture.Target, path).ToString();

    [Fact]
    public async Task Two_hundred_succeeds_with_status_headers_and_body_recorded()
    {
        var id = await Server.EnqueueAsync(new { task = "http.request", args = new { url = Url("/ok") } });

        var result = (await Server.WaitForStateAsync(id, "succeeded")).GetProperty("result");
        Assert.Equal(200, result.GetProperty("status").GetInt32());
        Assert.StartsWith("application/json", result.GetProperty("headers").GetProperty("Content-Type").GetString());
        Assert.Equal("world", JsonDocument.Parse(result.GetProperty("body").GetString()!).RootElement.GetProperty("hello").GetString());
        Assert.False(result.GetProperty("bodyTruncated").GetBoolean());
    }

    [Fact]
    public async Task Json_body_is_sent_as_json()
    {
        var id = await Server.EnqueueAsync(new { task = "http.request", args = new { method = "POST", url = Url("/echo"), body = new { order = 42 } } });

        var result = (await Server.WaitForStateAsync(id, "succeeded")).GetProperty("result");
        Assert.Equal("""{"order":42}""", result.GetProperty("body").GetString());
        Assert.StartsWith("application/json", result.GetProperty("headers").GetProperty("Content-Type").GetString());
    }

    [Fact]
    public async Task Long_body_is_cut_at_the_limit_and_marked()
    {
        var id = await Server.EnqueueAsync(new { task = "http.request", args = new { url = Url("/large") } });

        var result = (await Server.WaitForStateAsync(id, "succeeded")).GetProperty("result");
        Assert.Equal(new HttpTaskOptions().MaxResponseBodyBytes, result.GetProperty("body").GetString()!.Length);
        Assert.True(result.GetProperty("bodyTruncated").GetBoolean());
    }

    [Fact]
    public async Task Five_hundred_is_retried_then_dead()
    {
        var hitsBefore = fixture.FailureHits;
        var id = await Server.EnqueueAsync(new { task = "http.request", args = new { url = Url("/fail") }, maxAttempts = 2 });

        var task = await Server.WaitForStateAsync(id, "dead");

        Assert.Equal(2, task.GetProperty("attempts").GetInt32());
        var errors = task.GetProperty("errors").EnumerateArray().ToList();
        Assert.Equal(2, errors.Count);
        Assert.All(errors, e => Assert.Equal(typeof(HttpRequestException).FullName, e.GetProperty("error").GetProperty("type").GetString()));
        Assert.Contains("500", task.GetProperty("error").GetProperty("message").GetString());
        Assert.Contains("retrying", task.GetProperty("transitions").EnumerateArray().Select(t => t.GetProperty("state").GetString()));
        Assert.Equal(hitsBefore + 2, fixture.FailureHits);
    }

    [Fact]
    public async Task Four_hundred_four_is_dead_without_retries()
    {
        var id = await Server.EnqueueAsync(new { task = "http.request", args = new { url = Url("/missing") } });

        var task = await Server.WaitForStateAsync(id, "dead");

        Assert.Equal(1, task.GetProperty("attempts").GetInt32());
        Assert.Equal(typeof(PermanentTaskException).FullName, task.GetProperty("error").GetProperty("type").GetString());
        Assert.Contains("404", task.GetProperty("error").GetProperty("message").GetString());
    }

    [Fact]
    public async Task Timeout_fails_the_attempt()
    {
        var id = await Server.EnqueueAsync(new { task = "http.request", args = new { url = Url("/slow"), timeoutSeconds = 0.3 }, maxAttempts = 1 });

        var task = await Server.WaitForStateAsync(id, "dead");

        Assert.Equal(typeof(TimeoutException).FullName, task.GetProperty("error").GetProperty("type").GetString());
    }

    [Fact]
    public async Task Host_not_allowed_when_it_runs_is_dead_with_a_clear_error()
    {
        // The API refuses such a URL at enqueue; a task stored by another way (or before the allow-list changed) meets the same rule when it runs.
        var client = Server.Service<ITaskClient>();
        var url = $"http://localhost:{fixture.Target.Port}/ok";
        var result = await client.EnqueueAsync(TaskRequest.Create(HttpRequestTask.Name, new { url }));

        var task = await Server.WaitForStateAsync(result.Id, "dead");

        Assert.Equal(1, task.GetProperty("attempts").GetInt32());
        var message = task.GetProperty("error").GetProperty("message").GetString();
        Assert.Contains("host 'localhost' is not in Conveyor:Http:AllowedHosts", message);
    }

    [Fact]
    public async Task Host_not_allowed_is_refused_at_enqueue()
    {
        var before = await Server.CountTasksAsync();

        using var response = await Server.PostJsonAsync("/api/v1/tasks",
            $$$"""{"task": "http.request", "args": {"url": "http://localhost:{{{fixture.Target.Port}}}/ok"}}""");

        var problem = await ApiValidationTests.AssertProblemAsync(response, HttpStatusCode.UnprocessableEntity);
        ApiValidationTests.AssertNamesField(problem, "args.url");
        Assert.Contains("AllowedHosts", problem.GetProperty("detail").GetString());
        Assert.Equal(before, await Server.CountTasksAsync());
    }

    [Fact]
    public async Task Path_and_query_are_left_out_of_the_error_a_failure_records()
    {
        var id = await Server.EnqueueAsync(new { task = "http.request", args = new { url = Url("/fail?token=s3cr3t-value") }, maxAttempts = 1 });

        var task = await Server.WaitForStateAsync(id, "dead");

        var message = task.GetProperty("error").GetProperty("message").GetString()!;
        Assert.Contains($"GET http://127.0.0.1:{fixture.Target.Port}/… answered 500", message);
        Assert.DoesNotContain("s3cr3t", message);
        Assert.DoesNotContain("/fail", message);
    }

    [Theory]
    [InlineData("Host", "internal.example")]
    [InlineData("transfer-encoding", "chunked")]
    public async Task Host_and_hop_by_hop_headers_are_refused_at_enqueue_naming_the_header(string header, string value)
    {
        var before = await Server.CountTasksAsync();

        using var response = await Server.PostJsonAsync("/api/v1/tasks", JsonSerializer.Serialize(new
        {
            task = "http.request",
            args = new { url = Url("/ok"), headers = new Dictionary<string, string> { [header] = value } },
        }));

        var problem = await ApiValidationTests.AssertProblemAsync(response, HttpStatusCode.UnprocessableEntity);
        ApiValidationTests.AssertNamesField(problem, "args.headers." + header);
        Assert.Equal(before, await Server.CountTasksAsync());
    }
}

/// <summary><c>http.request</c> with every host name allowed (<c>*</c>): internal addresses are still refused, on the
/// address connected to, unless <c>Conveyor:Http:AllowedNetworks</c> holds them.</summary>
public sealed class HttpDestinationGuardTests(HttpTargetFixture fixture) : IClassFixture<HttpTargetFixture>
{
    [Theory]
    [InlineData("http://127.0.0.2:{0}/ok")]
    [InlineData("http://169.254.169.254/latest/meta-data/")]
    [InlineData("http://[::ffff:10.1.2.3]/")]
    [InlineData("http://[::1]:{0}/ok")]
    public async Task An_internal_address_is_refused_at_enqueue_even_when_every_host_is_allowed(string url)
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?> { ["Conveyor:Http:AllowedHosts:0"] = "*" });

        using var response = await server.PostJsonAsync("/api/v1/tasks",
            JsonSerializer.Serialize(new { task = "http.request", args = new { url = string.Format(System.Globalization.CultureInfo.InvariantCulture, url, fixture.Target.Port) } }));

        var problem = await ApiValidationTests.AssertProblemAsync(response, HttpStatusCode.UnprocessableEntity);
        ApiValidationTests.AssertNamesField(problem, "args.url");
        Assert.Contains("internal address", problem.GetProperty("detail").GetString());
        Assert.Equal(0, await server.CountTasksAsync());
    }

    [Fact]
    public async Task A_name_that_resolves_to_loopback_is_refused_when_it_runs_and_nothing_is_called()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?> { ["Conveyor:Http:AllowedHosts:0"] = "*" });
        var hits = fixture.OkHits;

        var id = await server.EnqueueAsync(new { task = "http.request", args = new { url = $"http://localhost:{fixture.Target.Port}/ok" }, maxAttempts = 3 });
        var task = await server.WaitForStateAsync(id, "dead");

        Assert.Equal(1, task.GetProperty("attempts").GetInt32());
        Assert.Equal(typeof(PermanentTaskException).FullName, task.GetProperty("error").GetProperty("type").GetString());
        var message = task.GetProperty("error").GetProperty("message").GetString()!;
        Assert.Contains("'localhost' is at", message);
        Assert.Contains("AllowedNetworks", message);
        Assert.Equal(hits, fixture.OkHits);
    }

    [Fact]
    public async Task An_allowed_network_lets_a_name_that_resolves_into_it_be_called()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?>
        {
            ["Conveyor:Http:AllowedHosts:0"] = "*",
            ["Conveyor:Http:AllowedNetworks:0"] = "127.0.0.0/8",
            ["Conveyor:Http:AllowedNetworks:1"] = "::1",
        });

        var id = await server.EnqueueAsync(new { task = "http.request", args = new { url = $"http://localhost:{fixture.Target.Port}/ok" } });

        var result = (await server.WaitForStateAsync(id, "succeeded")).GetProperty("result");
        Assert.Equal(200, result.GetProperty("status").GetInt32());
    }

    [Theory]
    [InlineData("127.0.0.1", true)]
    [InlineData("10.20.30.40", true)]
    [InlineData("172.31.255.255", true)]
    [InlineData("172.32.0.1", false)]
    [InlineData("192.168.1.1", true)]
    [InlineData("169.254.169.254", true)]
    [InlineData("100.64.0.1", true)]
    [InlineData("0.0.0.0", true)]
    [InlineData("255.255.255.255", true)]
    [InlineData("8.8.8.8", false)]
    [InlineData("93.184.216.34", false)]
    [InlineData("::1", true)]
    [InlineData("::", true)]
    [InlineData("fe80::1", true)]
    [InlineData("fd00:ec2::254", true)]
    [InlineData("::ffff:127.0.0.1", true)]
    [InlineData("::ffff:8.8.8.8", false)]
    [InlineData("2606:4700:4700::1111", false)]
    public void Internal_addresses_are_told_from_public_ones(string address, bool isInternal)
    {
        Assert.Equal(isInternal, HttpDestinationGuard.IsInternal(System.Net.IPAddress.Parse(address)));
    }

    [Fact]
    public void An_exact_address_in_the_allowed_hosts_is_allowed_and_nothing_around_it()
    {
        var options = new HttpTaskOptions();
        options.AllowedHosts.Add("127.0.0.1");
        options.AllowedNetworks.Add("10.1.0.0/16");
        var guard = new HttpDestinationGuard(options);

        Assert.True(guard.Allows(System.Net.IPAddress.Parse("127.0.0.1")));
        Assert.True(guard.Allows(System.Net.IPAddress.Parse("::ffff:127.0.0.1")));
        Assert.False(guard.Allows(System.Net.IPAddress.Parse("127.0.0.2")));
        Assert.True(guard.Allows(System.Net.IPAddress.Parse("10.1.200.3")));
        Assert.False(guard.Allows(System.Net.IPAddress.Parse("10.2.0.1")));
        Assert.True(guard.Allows(System.Net.IPAddress.Parse("1.1.1.1")));
    }

    [Theory]
    [InlineData("10.0.0.0/33")]
    [InlineData("ten.0.0.0/8")]
    [InlineData("")]
    public void An_allowed_network_that_is_not_a_range_is_named(string entry)
    {
        Assert.Contains($"'{entry}' is not an address or range", HttpDestinationGuard.CheckNetworks(["127.0.0.1", entry]));
    }
}

public sealed class HttpTargetPolicyTests
{
    [Theory]
    [InlineData("api.example.com", "api.example.com", true)]
    [InlineData("api.example.com", "API.Example.com", true)]
    [InlineData("api.example.com", "example.com", false)]
    [InlineData("*.example.com", "a.example.com", true)]
    [InlineData("*.example.com", "a.b.example.com", true)]
    [InlineData("*.example.com", "example.com", false)]
    [InlineData("*.example.com", "badexample.com", false)]
    [InlineData("*.example.com", "example.com.evil.net", false)]
    [InlineData("*", "anything.net", true)]
    [InlineData("127.0.0.1", "127.0.0.1", true)]
    [InlineData("::1", "[::1]", true)]
    public void Host_matches_pattern(string pattern, string host, bool matches)
    {
        Assert.Equal(matches, HttpTargetPolicy.HostMatches(pattern, host));
    }

    [Fact]
    public void Empty_allow_list_refuses_every_url_and_says_how_to_allow_it()
    {
        var problem = HttpTargetPolicy.CheckUrl("https://api.example.com/hook", [], out var uri);

        Assert.Null(uri);
        Assert.Contains("AllowedHosts is empty", problem);
        Assert.Contains("api.example.com", problem);
    }

    [Theory]
    [InlineData("file:///etc/passwd")]
    [InlineData("ftp://api.example.com/x")]
    [InlineData("/relative/path")]
    [InlineData("")]
    public void Only_absolute_http_urls_are_allowed(string url)
    {
        Assert.NotNull(HttpTargetPolicy.CheckUrl(url, ["*"], out _));
    }
}
