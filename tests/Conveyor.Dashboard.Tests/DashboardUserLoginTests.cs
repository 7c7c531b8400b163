using System.Net;
using System.Text;
using System.Text.Json;
using Conveyor.Server.Tests;
using Microsoft.Playwright;
using OtpNet;
using static Microsoft.Playwright.Assertions;

namespace Conveyor.Dashboard.Tests;

/// <summary>A user added by <c>conveyor users add</c>, with a TOTP factor enrolled through the API, signs in on the page
/// with a password and then a code computed here with Otp.NET.</summary>
[Collection(BrowserCollection.Name)]
public sealed class DashboardUserLoginTests(BrowserFixture fixture)
{
    private const string Password = "dashboard user password 1";

    [Fact]
    public async Task A_user_signs_in_with_a_password_and_a_TOTP_code()
    {
        var folder = Directory.CreateTempSubdirectory("conveyor-dashboard-tests-").FullName;
        var add = await ConveyorProcess.RunAsync(folder, new Dictionary<string, string>
        {
            ["DATABASE_URL"] = "sqlite:///" + Path.Combine(folder, "conveyor.db"),
            ["CONVEYOR_USER_PASSWORD"] = Password,
        }, "users", "add", "operator", "--role", "admin");
        Assert.True(add.ExitCode == 0, add.Error);
        await using var server = await DashboardServer.StartAsync(folder: folder);
        var secret = await EnrolAsync(server.BaseAddress);

        var page = await fixture.NewPageAsync();
        await page.GotoAsync(new Uri(server.BaseAddress, "queues").ToString());
        await page.GetByLabel("User").FillAsync("operator");
        await page.GetByLabel("Password").FillAsync(Password);
        await page.GetByRole(AriaRole.Button, new() { Name = "Continue" }).ClickAsync();
        // The enrolment accepted this time step's code: a code is taken once, so the next step's (within the window).
        var code = new Totp(Base32Encoding.ToBytes(secret)).ComputeTotp(DateTime.UtcNow.AddSeconds(30));
        await page.GetByLabel("Code").FillAsync(code);
        await page.GetByRole(AriaRole.Button, new() { Name = "Verify" }).ClickAsync();

        await Expect(page.Locator("[data-live=live]")).ToBeVisibleAsync();
        var nav = page.GetByRole(AriaRole.Navigation, new() { Name = "Main" });
        await Expect(nav.GetByRole(AriaRole.Link, new() { Name = "Audit" })).ToBeVisibleAsync();
        await BrowserFixture.ScreenshotAsync(page, "user-sign-in");
    }

    [Fact]
    public async Task A_user_enrols_a_second_factor_by_choice_on_the_account_page_and_replaces_the_recovery_codes()
    {
        var folder = Directory.CreateTempSubdirectory("conveyor-dashboard-tests-").FullName;
        var add = await ConveyorProcess.RunAsync(folder, new Dictionary<string, string>
        {
            ["DATABASE_URL"] = "sqlite:///" + Path.Combine(folder, "conveyor.db"),
            ["CONVEYOR_USER_PASSWORD"] = Password,
        }, "users", "add", "reader", "--role", "read");
        Assert.True(add.ExitCode == 0, add.Error);
        await using var server = await DashboardServer.StartAsync(folder: folder);

        var page = await fixture.NewPageAsync();
        await page.GotoAsync(server.BaseAddress.ToString());
        await page.GetByLabel("User").FillAsync("reader");
        await page.GetByLabel("Password").FillAsync(Password);
        await page.GetByRole(AriaRole.Button, new() { Name = "Continue" }).ClickAsync();
        await page.GetByRole(AriaRole.Link, new() { Name = "reader" }).ClickAsync();
        await Expect(page.Locator("#account-mfa")).ToHaveTextAsync("off");
        await page.GetByRole(AriaRole.Button, new() { Name = "Set up a second factor" }).ClickAsync();
        var secret = (await page.Locator("#mfa-secret").TextContentAsync())!.Trim();
        var totp = new Totp(Base32Encoding.ToBytes(secret));
        var now = DateTime.UtcNow;
        await page.GetByLabel("Code from the app").FillAsync(totp.ComputeTotp(now));
        await page.GetByRole(AriaRole.Button, new() { Name = "Confirm" }).ClickAsync();

        var codes = page.GetByRole(AriaRole.List, new() { Name = "Recovery codes" }).Locator("li");
        await Expect(codes).ToHaveCountAsync(10);
        var first = await codes.AllTextContentsAsync();
        await Expect(page.Locator("#account-mfa")).ToContainTextAsync("on");
        await page.GetByRole(AriaRole.Button, new() { Name = "I have saved them" }).ClickAsync();
        // The confirmation took this step's code: the next step's renews the codes (a code is accepted once).
        await page.GetByLabel("Code from the app").FillAsync(totp.ComputeTotp(now.AddSeconds(30)));
        await page.GetByRole(AriaRole.Button, new() { Name = "Replace them" }).ClickAsync();

        await Expect(codes).ToHaveCountAsync(10);
        Assert.Empty((await codes.AllTextContentsAsync()).Intersect(first));
        await Expect(page.Locator("#account-codes-left")).ToHaveTextAsync("10");
        await BrowserFixture.ScreenshotAsync(page, "account");
    }

    // Signs in over HTTP from loopback and enrols a TOTP factor; returns its secret.
    private static async Task<string> EnrolAsync(Uri baseAddress)
    {
        using var http = new HttpClient(new HttpClientHandler { UseCookies = false }) { BaseAddress = baseAddress };
        using var login = await http.PostAsync("api/v1/session/login",
            new StringContent(JsonSerializer.Serialize(new { user = "operator", password = Password }), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, login.StatusCode);
        var cookies = login.Headers.GetValues("Set-Cookie").Select(c => c.Split(';')[0]).ToList();
        var csrf = cookies.Single(c => c.StartsWith("conveyor_csrf=", StringComparison.Ordinal))["conveyor_csrf=".Length..];
        async Task<JsonElement> PostAsync(string path, object body)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, path)
            {
                Content = new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json"),
            };
            request.Headers.Add("Cookie", string.Join("; ", cookies));
            request.Headers.Add("X-Conveyor-CSRF", Uri.UnescapeDataString(csrf));
            using var response = await http.SendAsync(request);
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, text);
            return JsonDocument.Parse(text).RootElement.Clone();
        }
        var secret = (await PostAsync("api/v1/session/mfa/enrol", new { })).GetProperty("secret").GetString()!;
        var code = new Totp(Base32Encoding.ToBytes(secret)).ComputeTotp(DateTime.UtcNow);
        Assert.Equal(10, (await PostAsync("api/v1/session/mfa/confirm", new { code })).GetProperty("recoveryCodes").GetArrayLength());
        return secret;
    }
}
