using Microsoft.Playwright;

namespace Conveyor.Dashboard.Tests;

/// <summary>
/// Debian's Chromium (<c>/usr/bin/chromium</c>, installed by scripts/test.sh when missing), driven by Playwright, and one
/// open server shared by the browser tests, which run one after another (the collection below). Playwright's own
/// browser download is never used: the executable is given.
/// </summary>
public sealed class BrowserFixture : IAsyncLifetime
{
    public IPlaywright Playwright { get; private set; } = null!;
    public IBrowser Browser { get; private set; } = null!;
    public DashboardServer Server { get; private set; } = null!;

    /// <summary>Where screenshots go: .artifacts/test-results/dashboard-screenshots under the repository.</summary>
    public static string ScreenshotFolder { get; } = Path.Combine(Conveyor.Server.Tests.ConveyorProcess.RepositoryRoot, ".artifacts", "test-results", "dashboard-screenshots");

    public static string ChromiumPath()
    {
        var configured = Environment.GetEnvironmentVariable("CONVEYOR_CHROMIUM");
        foreach (var candidate in new[] { configured, "/usr/bin/chromium", "/usr/bin/chromium-browser" })
        {
            if (!string.IsNullOrEmpty(candidate) && File.Exists(candidate))
            {
                return candidate;
            }
        }
        throw new InvalidOperationException("Chromium is not installed: run 'apt-get install -y chromium' (scripts/test.sh does), or set CONVEYOR_CHROMIUM to its path.");
    }

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(ScreenshotFolder);
        // Generous on a shared machine: a passing expectation returns as soon as it holds.
        Assertions.SetDefaultExpectTimeout(15_000);
        var server = DashboardServer.StartAsync();
        Playwright = await Microsoft.Playwright.Playwright.CreateAsync();
        Browser = await Playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = ChromiumPath(),
            Headless = true,
            // window.gc() and exact performance.memory, for the JS heap measure (DashboardLoadTests).
            Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--js-flags=--expose-gc", "--enable-precise-memory-info"],
        });
        Server = await server;
    }

    /// <summary>A fresh browser context (cookies, storage) and page; desktop size unless told.</summary>
    public async Task<IPage> NewPageAsync(BrowserNewContextOptions? options = null)
    {
        var context = await Browser.NewContextAsync(options ?? new BrowserNewContextOptions { ViewportSize = new ViewportSize { Width = 1280, Height = 900 } });
        context.SetDefaultTimeout(15_000);
        return await context.NewPageAsync();
    }

    public static async Task ScreenshotAsync(IPage page, string name) =>
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(ScreenshotFolder, name + ".png"), FullPage = true });

    public async Task DisposeAsync()
    {
        if (Browser is not null)
        {
            await Browser.DisposeAsync();
        }
        Playwright?.Dispose();
        if (Server is not null)
        {
            await Server.DisposeAsync();
        }
    }
}

[CollectionDefinition(Name)]
public sealed class BrowserCollection : ICollectionFixture<BrowserFixture>
{
    public const string Name = "browser";
}
