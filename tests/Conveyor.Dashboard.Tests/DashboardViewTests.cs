using System.Text.Json;
using Microsoft.Playwright;
using Xunit.Abstractions;
using static Microsoft.Playwright.Assertions;

namespace Conveyor.Dashboard.Tests;

/// <summary>Each view against a real server: data arrives live (no reload), actions work end to end, filters and paging
/// are right. Each test uses queues of its own, so the tests do not see each other's tasks.</summary>
[Collection(BrowserCollection.Name)]
public sealed class DashboardViewTests(BrowserFixture fixture, ITestOutputHelper output)
{
    private DashboardServer Server => fixture.Server;

    private string Url(string path = "") => new Uri(Server.BaseAddress, path).ToString();

    [Fact]
    public async Task Overview_paints_within_a_second_and_shows_new_tasks_live()
    {
        var page = await fixture.NewPageAsync();
        // Once to warm the server's first requests (JIT); the second load is the one measured.
        await page.GotoAsync(Url());
        await Expect(page.Locator("[data-live=live]")).ToBeVisibleAsync();

        await page.GotoAsync(Url());
        await Expect(page.Locator("[data-card=queued] .value")).Not.ToHaveTextAsync("…");
        await Expect(page.Locator("[data-chart=Throughput] svg")).ToBeVisibleAsync();
        // Times from the start of the navigation: the browser's first contentful paint, and the frame after the
        // overview's charts, depths and worker count first rendered (a mark the page sets).
        await page.WaitForFunctionAsync("() => performance.getEntriesByName('conveyor:overview-ready').length > 0");
        var timing = await page.EvaluateAsync<JsonElement>("""
            () => ({
              firstContentfulPaint: performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1,
              dataPainted: performance.getEntriesByName('conveyor:overview-ready')[0].startTime,
            })
            """);
        var fcp = timing.GetProperty("firstContentfulPaint").GetDouble();
        var painted = timing.GetProperty("dataPainted").GetDouble();
        output.WriteLine($"overview first contentful paint: {fcp:F0} ms; overview with its data painted: {painted:F0} ms");
        Console.WriteLine($"dashboard: overview first contentful paint {fcp:F0} ms, painted with its data at {painted:F0} ms (target 1000 ms)");
        // Measured and printed, not a timed assertion (the machine is shared); only a sanity bound.
        Assert.InRange(painted, 0, 10_000);

        // Tasks in a queue no worker consumes: the depth table gains a row, and its count climbs, without a reload.
        await Server.EnqueueAsync("conveyor.noop", queue: "overview-held");
        var row = page.Locator("[data-queue=overview-held]");
        await Expect(row.Locator("[data-state=queued]")).ToHaveTextAsync("1");
        await Server.EnqueueAsync("conveyor.noop", queue: "overview-held");
        await Server.EnqueueAsync("conveyor.noop", queue: "overview-held");
        await Expect(row.Locator("[data-state=queued]")).ToHaveTextAsync("3");

        // A failure shows in the recent failures, live.
        var failed = await Server.EnqueueFailingAsync();
        await Expect(page.Locator($".failures [data-task-id='{failed}']")).ToBeVisibleAsync();
        await Expect(page.Locator($".failures [data-task-id='{failed}'] .error-line")).ToContainTextAsync("HttpRequestException");

        // Work done shows on the throughput chart (its legend totals the window) once the stats are read again.
        var legend = page.Locator("[data-chart=Throughput] .legend.ok");
        var before = await SucceededAsync(legend);
        for (var i = 0; i < 5; i++)
        {
            await Server.EnqueueAsync("conveyor.noop");
        }
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        while (await SucceededAsync(legend) < before + 5)
        {
            Assert.True(DateTime.UtcNow < deadline, $"The throughput chart did not count 5 more successes: {await legend.TextContentAsync()} (was {before})");
            await Task.Delay(100);
        }
        await Expect(page.Locator("[data-card=workers] .value")).ToHaveTextAsync("1");
        await BrowserFixture.ScreenshotAsync(page, "overview");
    }

    // "succeeded: 1,234 in 15 min" → 1234.
    private static async Task<long> SucceededAsync(ILocator legend)
    {
        var text = (await legend.TextContentAsync())!;
        var digits = new string(text["succeeded: ".Length..].TakeWhile(c => char.IsDigit(c) || c == ',').Where(char.IsDigit).ToArray());
        return long.Parse(digits, System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task Tasks_list_pages_with_cursors_and_filters_by_state_queue_and_text()
    {
        var ids = new List<string>();
        for (var i = 0; i < 7; i++)
        {
            ids.Add(await Server.EnqueueAsync("conveyor.noop", new { order = i }, queue: "paging"));
        }
        var needle = await Server.EnqueueAsync("conveyor.noop", new { note = "zebra-4711" }, queue: "paging-other");
        ids.Reverse(); // newest first

        var page = await fixture.NewPageAsync();
        await page.GotoAsync(Url("tasks?queue=paging&limit=3"));
        var rows = page.Locator("table.tasks tbody tr");
        await Expect(rows).ToHaveCountAsync(3);
        Assert.Equal(ids[..3], await RowIdsAsync(rows));
        await page.GetByRole(AriaRole.Button, new() { Name = "Next page" }).ClickAsync();
        await Expect(rows.First).ToHaveAttributeAsync("data-task-id", ids[3]);
        Assert.Equal(ids[3..6], await RowIdsAsync(rows));
        await page.GetByRole(AriaRole.Button, new() { Name = "Next page" }).ClickAsync();
        await Expect(rows).ToHaveCountAsync(1);
        Assert.Equal(ids[6..], await RowIdsAsync(rows));
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Next page" })).ToHaveCountAsync(0);
        await page.GetByRole(AriaRole.Button, new() { Name = "Previous" }).ClickAsync();
        await Expect(rows.First).ToHaveAttributeAsync("data-task-id", ids[3]);
        await page.GoBackAsync();
        await Expect(rows).ToHaveCountAsync(1);

        // The filter form: text in arguments finds the one task, across queues.
        await page.GotoAsync(Url("tasks"));
        await page.GetByLabel("Text in arguments or errors").FillAsync("zebra-4711");
        await page.GetByRole(AriaRole.Button, new() { Name = "Filter", Exact = true }).ClickAsync();
        await Expect(rows).ToHaveCountAsync(1);
        await Expect(rows.First).ToHaveAttributeAsync("data-task-id", needle);
        Assert.Contains("text=zebra-4711", page.Url, StringComparison.Ordinal);

        // State and queue: the held tasks are queued, none succeeded.
        await page.GotoAsync(Url("tasks"));
        await page.Locator("select[name=state]").SelectOptionAsync("succeeded");
        await page.GetByLabel("Queue", new() { Exact = true }).FillAsync("paging");
        await page.GetByRole(AriaRole.Button, new() { Name = "Filter", Exact = true }).ClickAsync();
        await Expect(page.Locator(".empty")).ToContainTextAsync("No tasks match");
        await page.Locator("select[name=state]").SelectOptionAsync("queued");
        await page.GetByRole(AriaRole.Button, new() { Name = "Filter", Exact = true }).ClickAsync();
        await Expect(rows).ToHaveCountAsync(7);

        // A time range that ends before the tasks were made shows none of them.
        await page.GotoAsync(Url("tasks?queue=paging&to=2020-01-01T00:00:00"));
        await Expect(page.Locator(".empty")).ToBeVisibleAsync();

        // The first page is live: a new task in the filtered queue arrives without a reload.
        await page.GotoAsync(Url("tasks?queue=paging&limit=3"));
        await Expect(rows.First).ToHaveAttributeAsync("data-task-id", ids[0]);
        var added = await Server.EnqueueAsync("conveyor.noop", new { order = 7 }, queue: "paging");
        await Expect(rows.First).ToHaveAttributeAsync("data-task-id", added);
        await BrowserFixture.ScreenshotAsync(page, "tasks");
    }

    private static async Task<List<string>> RowIdsAsync(ILocator rows)
    {
        var ids = new List<string>();
        foreach (var row in await rows.AllAsync())
        {
            ids.Add((await row.GetAttributeAsync("data-task-id"))!);
        }
        return ids;
    }

    [Fact]
    public async Task Failed_task_page_shows_its_error_and_stack_trace_and_retry_queues_it_again()
    {
        var id = await Server.EnqueueFailingAsync();
        var page = await fixture.NewPageAsync();
        // Opened before it fails: the page follows it live to dead.
        await page.GotoAsync(Url($"tasks/{id}"));
        await Expect(page.Locator(".task-head .badge").First).ToHaveTextAsync("dead");
        var error = page.Locator("[data-section=error]");
        await Expect(error).ToContainTextAsync("System.Net.Http.HttpRequestException");
        await Expect(error).ToContainTextAsync("Connection refused");
        await Expect(error.Locator("pre.stack")).ToContainTextAsync("   at System.Net");
        await Expect(page.Locator("[data-section=args]")).ToContainTextAsync("http://127.0.0.1:1/unreachable");
        await Expect(page.Locator("[data-section=timeline]")).ToContainTextAsync("attempt 1 failed");
        // The first list of facts (queue, priority, attempts, worker); a second lists the headers (traceparent).
        await Expect(page.Locator(".facts").First).ToContainTextAsync("1 of 1");
        await BrowserFixture.ScreenshotAsync(page, "task-failed");

        await page.GetByRole(AriaRole.Button, new() { Name = "Retry" }).ClickAsync();
        await Expect(page.Locator(".notice")).ToContainTextAsync("queued again");
        // It runs again and fails again: a second attempt is on the timeline.
        await Expect(page.Locator("[data-section=timeline]")).ToContainTextAsync("attempt 1 failed");
        var task = await Server.WaitForStateAsync(id, "dead");
        Assert.True(task.GetProperty("transitions").EnumerateArray().Count(t => t.GetProperty("state").GetString() == "queued") >= 2, task.ToString());
    }

    [Fact]
    public async Task Cancel_asks_for_confirmation_and_cancels_a_waiting_task()
    {
        var id = await Server.EnqueueAsync("conveyor.noop", new { purpose = "cancel" }, queue: "cancel-held");
        var page = await fixture.NewPageAsync();
        await page.GotoAsync(Url($"tasks/{id}"));
        await Expect(page.Locator(".task-head .badge").First).ToHaveTextAsync("queued");

        // Dismissed: nothing happens.
        await page.GetByRole(AriaRole.Button, new() { Name = "Cancel…" }).ClickAsync();
        var dialog = page.GetByRole(AriaRole.Dialog);
        await Expect(dialog).ToContainTextAsync("Cancel this task?");
        await dialog.GetByRole(AriaRole.Button, new() { Name = "Cancel", Exact = true }).ClickAsync();
        await Expect(dialog).Not.ToBeVisibleAsync();
        Assert.Equal("queued", (await Server.GetAsync($"api/v1/tasks/{id}")).GetProperty("state").GetString());

        await page.GetByRole(AriaRole.Button, new() { Name = "Cancel…" }).ClickAsync();
        await dialog.GetByRole(AriaRole.Button, new() { Name = "Cancel task" }).ClickAsync();
        await Expect(page.Locator(".task-head .badge").First).ToHaveTextAsync("cancelled");
        Assert.Equal("cancelled", (await Server.GetAsync($"api/v1/tasks/{id}")).GetProperty("state").GetString());
    }

    [Fact]
    public async Task Bulk_retry_and_purge_act_on_the_dead_tasks_of_the_filter()
    {
        var dead = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            dead.Add(await Server.EnqueueFailingAsync("bulk"));
        }
        foreach (var id in dead)
        {
            await Server.WaitForStateAsync(id, "dead");
        }
        var page = await fixture.NewPageAsync();
        await page.GotoAsync(Url("tasks?queue=bulk&state=dead"));
        var rows = page.Locator("table.tasks tbody tr");
        await Expect(rows).ToHaveCountAsync(3);

        await page.GetByRole(AriaRole.Button, new() { Name = "Retry dead tasks…" }).ClickAsync();
        var dialog = page.GetByRole(AriaRole.Dialog);
        await Expect(dialog).ToContainTextAsync("in queue bulk");
        await dialog.GetByRole(AriaRole.Button, new() { Name = "Retry them" }).ClickAsync();
        await Expect(page.Locator(".notice").Last).ToContainTextAsync("3 tasks queued again");
        foreach (var id in dead)
        {
            // Queued again, run again, dead again: two enqueues in its history.
            await Server.WaitUntilAsync($"api/v1/tasks/{id}", t => t.GetProperty("state").GetString() == "dead"
                && t.GetProperty("transitions").EnumerateArray().Count(x => x.GetProperty("state").GetString() == "queued") >= 2);
        }

        await Expect(rows).ToHaveCountAsync(3);
        await page.GetByRole(AriaRole.Button, new() { Name = "Purge dead tasks…" }).ClickAsync();
        await Expect(dialog).ToContainTextAsync("cannot be undone");
        await dialog.GetByRole(AriaRole.Button, new() { Name = "Purge them" }).ClickAsync();
        await Expect(page.Locator(".notice").Last).ToContainTextAsync("3 tasks deleted");
        await Expect(page.Locator(".empty")).ToBeVisibleAsync();
        var left = await Server.GetAsync("api/v1/tasks?queue=bulk");
        Assert.Empty(left.GetProperty("items").EnumerateArray());
    }

    [Fact]
    public async Task Queues_view_pauses_and_resumes_a_queue_and_counts_live()
    {
        await Server.EnqueueAsync("conveyor.noop", queue: "pausable");
        var page = await fixture.NewPageAsync();
        await page.GotoAsync(Url("queues"));
        var row = page.Locator("[data-queue=pausable]");
        await Expect(row.Locator("[data-state=succeeded]")).Not.ToHaveTextAsync("0");

        await row.GetByRole(AriaRole.Button, new() { Name = "Pause queue pausable" }).ClickAsync();
        await Expect(row.Locator(".badge")).ToHaveTextAsync("paused");
        var queue = (await Server.GetAsync("api/v1/queues")).EnumerateArray().Single(q => q.GetProperty("name").GetString() == "pausable");
        Assert.True(queue.GetProperty("paused").GetBoolean());

        // Paused: new tasks wait, and the count of queued ones climbs live.
        await Server.EnqueueAsync("conveyor.noop", queue: "pausable");
        await Server.EnqueueAsync("conveyor.noop", queue: "pausable");
        await Expect(row.Locator("[data-state=queued]")).ToHaveTextAsync("2");
        await BrowserFixture.ScreenshotAsync(page, "queues");

        await row.GetByRole(AriaRole.Button, new() { Name = "Resume queue pausable" }).ClickAsync();
        await Expect(row.Locator(".badge")).ToHaveTextAsync("active");
        await Expect(row.Locator("[data-state=queued]")).ToHaveTextAsync("0");
    }

    [Fact]
    public async Task Workers_view_shows_the_worker_and_its_running_task_live()
    {
        var page = await fixture.NewPageAsync();
        await page.GotoAsync(Url("workers"));
        var worker = page.Locator("article.worker.alive");
        await Expect(worker).ToHaveCountAsync(1);
        await Expect(worker).ToContainTextAsync("alive");

        var id = await Server.EnqueueAsync("conveyor.sleep", new { ms = 10_000 });
        await Expect(worker.Locator($"a[href$='tasks/{id}']")).ToBeVisibleAsync();
        await Expect(worker.Locator("[data-field=running]")).ToContainTextAsync("1 of");
        await BrowserFixture.ScreenshotAsync(page, "workers");
    }

    [Fact]
    public async Task Schedules_view_triggers_pauses_and_resumes_a_schedule()
    {
        await Server.PostAsync("api/v1/schedules", """{"name": "nightly-report", "every": "PT1H", "task": "conveyor.noop", "queue": "default"}""");
        var page = await fixture.NewPageAsync();
        await page.GotoAsync(Url("schedules"));
        var row = page.Locator("[data-schedule=nightly-report]");
        await Expect(row).ToContainTextAsync("every PT1H");

        await row.GetByRole(AriaRole.Button, new() { Name = "Trigger schedule nightly-report" }).ClickAsync();
        await page.GetByRole(AriaRole.Dialog).GetByRole(AriaRole.Button, new() { Name = "Run now" }).ClickAsync();
        var notice = page.Locator(".notice").Last;
        await Expect(notice).ToContainTextAsync("Enqueued task");
        var taskId = (await notice.TextContentAsync())!["Enqueued task ".Length..].Trim();
        var task = await Server.GetAsync($"api/v1/tasks/{taskId}");
        Assert.Equal("conveyor.noop", task.GetProperty("task").GetString());

        await row.GetByRole(AriaRole.Button, new() { Name = "Pause schedule nightly-report" }).ClickAsync();
        await Expect(row.Locator(".badge")).ToHaveTextAsync("paused");
        Assert.True((await Server.GetAsync("api/v1/schedules/nightly-report")).GetProperty("paused").GetBoolean());
        await BrowserFixture.ScreenshotAsync(page, "schedules");
        await row.GetByRole(AriaRole.Button, new() { Name = "Resume schedule nightly-report" }).ClickAsync();
        await Expect(row.Locator(".badge")).ToHaveTextAsync("active");
    }

    [Fact]
    public async Task Limits_view_lists_the_configured_limits()
    {
        var page = await fixture.NewPageAsync();
        await page.GotoAsync(Url("limits"));
        var row = page.Locator("table.limits tbody tr");
        await Expect(row).ToHaveCountAsync(1);
        await Expect(row).ToContainTextAsync("task http.request");
        await Expect(row).ToContainTextAsync("100/s");
        await BrowserFixture.ScreenshotAsync(page, "limits");
    }

    [Fact]
    public async Task Phone_sized_dark_layout_has_a_menu_and_no_horizontal_scroll()
    {
        var page = await fixture.NewPageAsync(new BrowserNewContextOptions
        {
            ViewportSize = new ViewportSize { Width = 390, Height = 844 },
            ColorScheme = ColorScheme.Dark,
            IsMobile = true,
            HasTouch = true,
        });
        await page.GotoAsync(Url());
        await Expect(page.Locator("[data-live=live]")).ToBeVisibleAsync();
        var nav = page.Locator("nav#nav");
        await Expect(nav).Not.ToBeVisibleAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "Menu" }).ClickAsync();
        await Expect(nav).ToBeVisibleAsync();
        await nav.GetByRole(AriaRole.Link, new() { Name = "Tasks" }).ClickAsync();
        await Expect(page.Locator("h1")).ToHaveTextAsync("Tasks");
        var overflow = await page.EvaluateAsync<bool>("() => document.documentElement.scrollWidth > window.innerWidth + 1");
        Assert.False(overflow, "the tasks page scrolls sideways on a phone");
        var background = await page.EvaluateAsync<string>("() => getComputedStyle(document.body).backgroundColor");
        Assert.Equal("rgb(15, 19, 24)", background);
        await page.GotoAsync(Url());
        await Expect(page.Locator("[data-card=queued] .value")).Not.ToHaveTextAsync("…");
        await BrowserFixture.ScreenshotAsync(page, "overview-phone-dark");
    }

    [Fact]
    public async Task Keyboard_reaches_every_control_with_a_visible_focus()
    {
        var page = await fixture.NewPageAsync();
        await page.GotoAsync(Url());
        await Expect(page.Locator("[data-live=live]")).ToBeVisibleAsync();
        await page.Keyboard.PressAsync("Tab");
        Assert.Equal("Skip to content", await page.EvaluateAsync<string>("() => document.activeElement.textContent"));
        var outline = await page.EvaluateAsync<string>("() => getComputedStyle(document.activeElement).outlineStyle");
        Assert.Equal("solid", outline);
        // Tab to the Tasks link and follow it with Enter.
        for (var i = 0; i < 10 && await page.EvaluateAsync<string>("() => document.activeElement.textContent") != "Tasks"; i++)
        {
            await page.Keyboard.PressAsync("Tab");
        }
        await page.Keyboard.PressAsync("Enter");
        await Expect(page.Locator("h1")).ToHaveTextAsync("Tasks");
        // The confirmation dialog takes focus and Escape closes it without acting.
        await page.GetByRole(AriaRole.Button, new() { Name = "Purge dead tasks…" }).FocusAsync();
        await page.Keyboard.PressAsync("Enter");
        await Expect(page.GetByRole(AriaRole.Dialog)).ToBeVisibleAsync();
        Assert.Equal("Purge them", await page.EvaluateAsync<string>("() => document.activeElement.textContent"));
        await page.Keyboard.PressAsync("Escape");
        await Expect(page.GetByRole(AriaRole.Dialog)).Not.ToBeVisibleAsync();
    }

    [Fact]
    public async Task Unknown_task_id_says_so()
    {
        var page = await fixture.NewPageAsync();
        await page.GotoAsync(Url($"tasks/{Guid.CreateVersion7()}"));
        await Expect(page.Locator(".note.error")).ToContainTextAsync("No task with this id");
        Assert.Equal(200, (await page.GotoAsync(Url("tasks")))!.Status);
        Assert.Equal(404, (await page.GotoAsync(Url("no-such-page")))!.Status);
    }
}
