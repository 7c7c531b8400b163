using System.Net;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace Conveyor.Dashboard.Tests;

/// <summary>A server with API keys (sign-in, session cookie, CSRF), and a server that goes away and comes back (the
/// stream's state and reconnection). Each test runs a server of its own.</summary>
[Collection(BrowserCollection.Name)]
public sealed class DashboardAccessTests(BrowserFixture fixture)
{
    private const string Key = "dashboard-test-key-7f3a-0123456789abcdef";

    [Fact]
    public async Task With_keys_the_page_signs_in_once_and_acts_with_an_HttpOnly_SameSite_cookie_and_a_CSRF_token()
    {
        await using var server = await DashboardServer.StartAsync(apiKey: Key);
        await server.EnqueueAsync("conveyor.noop", queue: "keyed-held");
        var page = await fixture.NewPageAsync();
        await page.GotoAsync(new Uri(server.BaseAddress, "queues").ToString());

        var keyField = page.GetByLabel("API key");
        await keyField.FillAsync("not-the-key");
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Alert)).ToContainTextAsync("not valid");
        await BrowserFixture.ScreenshotAsync(page, "sign-in");

        await keyField.FillAsync(Key);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        var row = page.Locator("[data-queue=keyed-held]");
        await Expect(row.Locator("[data-state=queued]")).ToHaveTextAsync("1");
        await Expect(page.Locator("[data-live=live]")).ToBeVisibleAsync();

        var cookies = await page.Context.CookiesAsync();
        var session = cookies.Single(c => c.Name == "conveyor_session");
        Assert.True(session.HttpOnly);
        Assert.True(session.Secure);
        Assert.Equal(SameSiteAttribute.Strict, session.SameSite);
        Assert.DoesNotContain(Key, session.Value, StringComparison.Ordinal);
        var csrf = cookies.Single(c => c.Name == "conveyor_csrf");
        Assert.False(csrf.HttpOnly);
        Assert.Equal(SameSiteAttribute.Strict, csrf.SameSite);
        Assert.DoesNotContain(Key, await page.EvaluateAsync<string>("() => document.cookie + JSON.stringify(localStorage) + JSON.stringify(sessionStorage)"), StringComparison.Ordinal);

        // An action through the page carries the token.
        await row.GetByRole(AriaRole.Button, new() { Name = "Pause queue keyed-held" }).ClickAsync();
        await Expect(row.Locator(".badge")).ToHaveTextAsync("paused");

        // The same cookie without the token, as a forged request would send it: refused, nothing changed.
        var forged = await page.EvaluateAsync<int>("async () => (await fetch('api/v1/queues/keyed-held/resume', { method: 'POST' })).status");
        Assert.Equal(403, forged);
        var wrongToken = await page.EvaluateAsync<int>("async () => (await fetch('api/v1/queues/keyed-held/resume', { method: 'POST', headers: { 'x-conveyor-csrf': 'guess' } })).status");
        Assert.Equal(403, wrongToken);
        var queue = (await server.GetAsync("api/v1/queues")).EnumerateArray().Single(q => q.GetProperty("name").GetString() == "keyed-held");
        Assert.True(queue.GetProperty("paused").GetBoolean());
        // Reads need no token.
        Assert.Equal(200, await page.EvaluateAsync<int>("async () => (await fetch('api/v1/queues')).status"));

        // Without the cookie the API is closed again.
        using (var anonymous = new HttpClient { BaseAddress = server.BaseAddress })
        {
            using var response = await anonymous.GetAsync("api/v1/queues");
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        }

        await page.GetByRole(AriaRole.Button, new() { Name = "Sign out" }).ClickAsync();
        await Expect(page.GetByLabel("API key")).ToBeVisibleAsync();
        Assert.DoesNotContain(await page.Context.CookiesAsync(), c => c.Name == "conveyor_session");
        Assert.Equal(401, await page.EvaluateAsync<int>("async () => (await fetch('api/v1/queues')).status"));
    }

    [Fact]
    public async Task When_the_server_goes_away_the_page_says_so_and_reconnects_by_itself()
    {
        await using var server = await DashboardServer.StartAsync();
        var page = await fixture.NewPageAsync();
        await page.GotoAsync(server.BaseAddress.ToString());
        var live = page.Locator(".live");
        await Expect(live).ToHaveAttributeAsync("data-live", "live");

        server.Kill();
        await Expect(live).ToHaveAttributeAsync("data-live", "down");
        await Expect(live).ToContainTextAsync("Disconnected");
        await BrowserFixture.ScreenshotAsync(page, "stream-down");

        await server.RestartAsync();
        await Expect(live).ToHaveAttributeAsync("data-live", "live", new() { Timeout = 30_000 });
        // Live again: a task enqueued now shows without a reload.
        await server.EnqueueAsync("conveyor.noop", queue: "after-restart");
        await Expect(page.Locator("[data-queue=after-restart] [data-state=queued]")).ToHaveTextAsync("1");
    }
}
