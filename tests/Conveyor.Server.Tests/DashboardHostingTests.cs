using System.Net;
using Conveyor.AspNetCore;
using Conveyor.Dashboard;
using Conveyor.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Conveyor.Server.Tests;

/// <summary>The dashboard's page and assets as <c>conveyor server</c> serves them at <c>/</c>, and mounted by
/// <c>MapConveyorDashboard("/conveyor")</c> in another app behind a path base.</summary>
public sealed class DashboardHostingTests(OpenServerFixture fixture) : IClassFixture<OpenServerFixture>
{
    private TestServer Server => fixture.Server;

    [Theory]
    [InlineData("/")]
    [InlineData("/tasks")]
    [InlineData("/tasks/0196a3e5-7f3e-7c4d-9b1a-2f4e5d6c7b8a")]
    [InlineData("/queues")]
    [InlineData("/workers")]
    [InlineData("/schedules")]
    [InlineData("/workflows")]
    [InlineData("/workflows/0196a3e5-7f3e-7c4d-9b1a-2f4e5d6c7b8a")]
    [InlineData("/limits")]
    public async Task Every_client_route_answers_the_page(string path)
    {
        using var response = await Server.Client.GetAsync(path);
        var html = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/html", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains("<base href=\"/\">", html, StringComparison.Ordinal);
        Assert.Contains("<meta name=\"conveyor-api\" content=\"/api/v1\">", html, StringComparison.Ordinal);
        Assert.Contains("script-src 'self'", response.Headers.GetValues("Content-Security-Policy").Single(), StringComparison.Ordinal);
        Assert.Equal("DENY", response.Headers.GetValues("X-Frame-Options").Single());
    }

    [Theory]
    [InlineData("/nothing-here")]
    [InlineData("/tasks/1/2")]
    [InlineData("/api/v2/tasks")]
    [InlineData("/assets/missing.js")]
    public async Task Other_paths_are_404_not_the_page(string path)
    {
        using var response = await Server.Client.GetAsync(path);
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
    }

    [Fact]
    public async Task Assets_named_in_the_page_are_served_with_long_caching_and_an_etag()
    {
        var html = await Server.Client.GetStringAsync("/");
        var script = System.Text.RegularExpressions.Regex.Match(html, "src=\"(assets/app\\.js\\?v=[0-9a-f]+)\"").Groups[1].Value;
        Assert.NotEmpty(script);

        using var response = await Server.Client.GetAsync("/" + script);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/javascript", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains("immutable", response.Headers.CacheControl?.ToString(), StringComparison.Ordinal);
        Assert.True((await response.Content.ReadAsByteArrayAsync()).Length > 1000);

        using var again = new HttpRequestMessage(HttpMethod.Get, "/" + script);
        again.Headers.IfNoneMatch.Add(response.Headers.ETag!);
        using var notModified = await Server.Client.SendAsync(again);
        Assert.Equal(HttpStatusCode.NotModified, notModified.StatusCode);
    }

    [Fact]
    public async Task MapConveyorDashboard_under_a_prefix_and_a_path_base_points_the_page_at_both()
    {
        var builder = WebApplication.CreateBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Services.AddConveyor(o => o.RunWorker = false).UseInMemoryBackend();
        builder.Services.AddConveyorApi();
        await using var app = builder.Build();
        app.UsePathBase("/app");
        // After the path base: the API's endpoints carry authorization policies, which need these once routing has run.
        app.UseRouting();
        app.UseAuthentication();
        app.UseAuthorization();
        app.MapConveyorApi();
        app.MapConveyorDashboard("/conveyor");
        app.MapGet("/", () => "the host app's own page");
        await app.StartAsync();
        using var client = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = new Uri(app.Urls.First()) };

        var html = await client.GetStringAsync("/app/conveyor/tasks");
        Assert.Contains("<base href=\"/app/conveyor/\">", html, StringComparison.Ordinal);
        Assert.Contains("<meta name=\"conveyor-api\" content=\"/app/api/v1\">", html, StringComparison.Ordinal);
        using (var redirect = await client.GetAsync("/app/conveyor?x=1"))
        {
            Assert.Equal(HttpStatusCode.Redirect, redirect.StatusCode);
            Assert.Equal("/app/conveyor/?x=1", redirect.Headers.Location?.ToString());
        }
        using (var asset = await client.GetAsync("/app/conveyor/assets/style.css"))
        {
            Assert.Equal(HttpStatusCode.OK, asset.StatusCode);
            Assert.Equal("text/css", asset.Content.Headers.ContentType?.MediaType);
        }
        Assert.Equal("the host app's own page", await client.GetStringAsync("/app/"));
        using var queues = await client.GetAsync("/app/api/v1/queues");
        Assert.Equal(HttpStatusCode.OK, queues.StatusCode);
        await app.StopAsync();
    }

    [Fact]
    public void MapConveyorDashboard_refuses_a_prefix_without_a_slash()
    {
        var builder = WebApplication.CreateBuilder();
        using var app = builder.Build();
        var error = Assert.Throws<ArgumentException>(() => app.MapConveyorDashboard("conveyor"));
        Assert.Contains("/conveyor", error.Message, StringComparison.Ordinal);
    }
}
