using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace Conveyor.Dashboard.Tests;

/// <summary>The Audit view: an action done through the page is listed with its actor, target and outcome, the filters
/// narrow the list, and a session without the admin scope is not offered the view.</summary>
[Collection(BrowserCollection.Name)]
public sealed class DashboardAuditTests(BrowserFixture fixture)
{
    private const string Key = "dashboard-audit-key-5b2e-0123456789abcdef";

    private static async Task SignInAsync(IPage page, string key)
    {
        await page.GetByLabel("API key").FillAsync(key);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        await Expect(page.Locator("[data-live=live]")).ToBeVisibleAsync();
    }

    [Fact]
    public async Task The_audit_view_lists_an_action_done_through_the_page_for_admin_sessions_only()
    {
        await using var server = await DashboardServer.StartAsync(apiKey: Key);
        await server.EnqueueAsync("conveyor.noop", queue: "audit-held");
        var page = await fixture.NewPageAsync();
        await page.GotoAsync(new Uri(server.BaseAddress, "queues").ToString());
        await SignInAsync(page, Key);

        var row = page.Locator("[data-queue=audit-held]");
        await row.GetByRole(AriaRole.Button, new() { Name = "Pause queue audit-held" }).ClickAsync();
        await Expect(row.Locator(".badge")).ToHaveTextAsync("paused");

        await page.GetByRole(AriaRole.Navigation, new() { Name = "Main" }).GetByRole(AriaRole.Link, new() { Name = "Audit" }).ClickAsync();
        var paused = page.Locator("tr[data-audit-action='queue.pause']");
        await Expect(paused).ToHaveCountAsync(1);
        await Expect(paused).ToContainTextAsync("audit-held");
        await Expect(paused).ToContainTextAsync("session");
        await Expect(paused).ToContainTextAsync("127.0.0.1");
        await Expect(paused.Locator(".badge")).ToHaveTextAsync("ok");
        await Expect(page.Locator("tr[data-audit-action='session.sign-in']")).ToHaveCountAsync(1);
        await BrowserFixture.ScreenshotAsync(page, "audit");

        await page.GetByLabel("Action").FillAsync("session.");
        await page.GetByRole(AriaRole.Button, new() { Name = "Filter" }).ClickAsync();
        await Expect(page.Locator("tr[data-audit-action='session.sign-in']")).ToHaveCountAsync(1);
        await Expect(paused).ToHaveCountAsync(0);

        // A read-only key's session: no Audit link, and the API refuses the log.
        var readKey = (await server.PostAsync("api/v1/keys", """{"name": "viewer", "scopes": ["read"]}""")).GetProperty("key").GetString()!;
        var reader = await fixture.NewPageAsync();
        await reader.GotoAsync(new Uri(server.BaseAddress, "queues").ToString());
        await SignInAsync(reader, readKey);
        var nav = reader.GetByRole(AriaRole.Navigation, new() { Name = "Main" });
        await Expect(nav.GetByRole(AriaRole.Link, new() { Name = "Queues" })).ToBeVisibleAsync();
        await Expect(nav.GetByRole(AriaRole.Link, new() { Name = "Audit" })).ToHaveCountAsync(0);
        Assert.Equal(403, await reader.EvaluateAsync<int>("async () => (await fetch('api/v1/audit')).status"));
    }
}
