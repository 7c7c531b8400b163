using System.Net;
using System.Text.Json;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace Conveyor.Dashboard.Tests;

/// <summary>The workflows list and a workflow's page against a real server: workflows made over HTTP, their steps seen
/// in their states and changing live, cancel and retry through the page. Steps run in the queue <c>workflows</c> (or
/// <c>workflows-gated</c>, which a test pauses); steps meant to wait for ever go to <c>workflows-held</c>, which no worker
/// consumes. Names carry a test's own suffix, so the tests do not see each other's workflows.</summary>
[Collection(BrowserCollection.Name)]
public sealed class DashboardWorkflowTests(BrowserFixture fixture)
{
    private DashboardServer Server => fixture.Server;

    private string Url(string path = "") => new Uri(Server.BaseAddress, path).ToString();

    private static string Unique(string name) => $"{name}-{Guid.NewGuid().ToString("N")[..8]}";

    private async Task<string> StartAsync(string json) =>
        (await Server.PostAsync("api/v1/workflows", json)).GetProperty("id").GetString()!;

    /// <summary>A chain of two no-op steps ("0", then "1") in <paramref name="queue"/>.</summary>
    private Task<string> StartChainAsync(string name, string queue) => StartAsync(JsonSerializer.Serialize(new
    {
        name,
        chain = new[] { new { task = "conveyor.noop", queue }, new { task = "conveyor.noop", queue } },
    }));

    private Task<JsonElement> WaitForWorkflowAsync(string id, string state) =>
        Server.WaitUntilAsync($"api/v1/workflows/{id}", w => w.GetProperty("state").GetString() == state);

    [Fact]
    public async Task Workflow_page_shows_the_steps_in_layers_and_a_step_succeeding_live_and_its_tasks_link_back()
    {
        // The queue is paused until the page shows the chain waiting, so the page sees every step change.
        await Server.PostAsync("api/v1/queues/workflows-gated/pause", "", HttpStatusCode.OK);
        var name = Unique("chain");
        string id;
        try
        {
            id = await StartChainAsync(name, "workflows-gated");
            var page = await fixture.NewPageAsync();
            // The page follows the workflow on a stream the server filters to its steps' events.
            var stream = await page.RunAndWaitForRequestAsync(() => page.GotoAsync(Url($"workflows/{id}")),
                r => r.Url.Contains("/api/v1/events?", StringComparison.Ordinal));
            Assert.Equal(Url($"api/v1/events?workflow={id}"), stream.Url);
            await Expect(page.Locator("h1")).ToContainTextAsync(name);
            var head = page.Locator("[data-section=workflow-head] .badge");
            await Expect(head).ToHaveTextAsync("running");
            // Columns by depth: "0" first, "1" (after "0") in the next layer, joined by an edge.
            var first = page.Locator("[data-layer='0'] [data-step-id='0']");
            var second = page.Locator("[data-layer='1'] [data-step-id='1']");
            await Expect(first).ToHaveAttributeAsync("data-state", "queued");
            await Expect(first.Locator(".badge")).ToHaveTextAsync("queued");
            await Expect(first).ToContainTextAsync("conveyor.noop");
            await Expect(second).ToHaveAttributeAsync("data-state", "pending");
            await Expect(second.Locator(".badge")).ToHaveTextAsync("pending");
            await Expect(page.Locator("svg.edges path")).ToHaveCountAsync(1);
            await Expect(page.Locator("[data-section=summary] [data-field=progress]")).ToHaveTextAsync("0/2 succeeded");
            // Set in this document: still there at the end only if the page was never reloaded.
            await page.EvaluateAsync("() => { window.conveyorTestMarker = 'not reloaded'; }");

            await Server.PostAsync("api/v1/queues/workflows-gated/resume", "", HttpStatusCode.OK);
            await Expect(second).ToHaveAttributeAsync("data-state", "succeeded");
            await Expect(second.Locator(".badge")).ToHaveTextAsync("succeeded");
            await Expect(second).ToContainTextAsync("1 attempt");
            await Expect(first).ToHaveAttributeAsync("data-state", "succeeded");
            await Expect(head).ToHaveTextAsync("succeeded");
            await Expect(page.Locator("[data-section=summary] [data-field=progress]")).ToHaveTextAsync("2/2 succeeded");
            Assert.Equal("not reloaded", await page.EvaluateAsync<string>("() => window.conveyorTestMarker"));
            // Finished: neither action is offered.
            await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Cancel workflow…" })).ToHaveCountAsync(0);
            await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Retry workflow…" })).ToHaveCountAsync(0);
            await BrowserFixture.ScreenshotAsync(page, "workflow");

            // A step's card links to its task, whose page links back to the workflow.
            var workflow = await Server.GetAsync($"api/v1/workflows/{id}");
            var taskId = workflow.GetProperty("steps")[1].GetProperty("taskId").GetString()!;
            await second.GetByRole(AriaRole.Link, new() { Name = "1", Exact = true }).ClickAsync();
            await Expect(page).ToHaveURLAsync(Url($"tasks/{taskId}"));
            var link = page.Locator("[data-field=workflow]");
            await Expect(link).ToContainTextAsync("step 1");
            await link.GetByRole(AriaRole.Link, new() { Name = id }).ClickAsync();
            await Expect(page).ToHaveURLAsync(Url($"workflows/{id}"));
            await Expect(page.Locator("h1")).ToContainTextAsync(name);
        }
        finally
        {
            await Server.PostAsync("api/v1/queues/workflows-gated/resume", "", HttpStatusCode.OK);
        }
    }

    [Fact]
    public async Task Workflows_list_pages_filters_and_counts_steps_live()
    {
        var name = Unique("listed");
        var held = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            held.Add(await StartChainAsync(name, "workflows-held"));
        }
        held.Reverse(); // newest first

        var page = await fixture.NewPageAsync();
        await page.GotoAsync(Url($"workflows?name={name}&limit=2"));
        var rows = page.Locator("table.workflows tbody tr");
        await Expect(rows).ToHaveCountAsync(2);
        Assert.Equal(held[..2], await RowIdsAsync(rows));
        var newest = page.Locator($"[data-workflow-id='{held[0]}']");
        await Expect(newest).ToContainTextAsync(name);
        await Expect(newest.Locator(".badge")).ToHaveTextAsync("running");
        await Expect(newest.Locator("[data-field=progress]")).ToHaveTextAsync("0/2 succeeded");
        await Expect(newest.Locator("[data-field=counts]")).ToHaveTextAsync("1 pending · 1 queued");

        await page.GetByRole(AriaRole.Button, new() { Name = "Next page" }).ClickAsync();
        await Expect(rows).ToHaveCountAsync(1);
        await Expect(rows.First).ToHaveAttributeAsync("data-workflow-id", held[2]);
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Next page" })).ToHaveCountAsync(0);
        await page.GetByRole(AriaRole.Button, new() { Name = "Previous" }).ClickAsync();
        await Expect(rows).ToHaveCountAsync(2);
        await Expect(rows.First).ToHaveAttributeAsync("data-workflow-id", held[0]);

        // The filter form: none of them has succeeded; all are running.
        await page.GotoAsync(Url("workflows"));
        await page.GetByLabel("Name").FillAsync(name);
        await page.Locator("select[name=state]").SelectOptionAsync("succeeded");
        await page.GetByRole(AriaRole.Button, new() { Name = "Filter", Exact = true }).ClickAsync();
        await Expect(page.Locator(".empty")).ToContainTextAsync("No workflows match");
        Assert.Contains($"name={name}", page.Url, StringComparison.Ordinal);
        await page.Locator("select[name=state]").SelectOptionAsync("running");
        await page.GetByRole(AriaRole.Button, new() { Name = "Filter", Exact = true }).ClickAsync();
        await Expect(rows).ToHaveCountAsync(3);

        // Live: a new workflow of the name arrives, runs and is counted succeeded, without a reload.
        await page.GotoAsync(Url($"workflows?name={name}"));
        await Expect(rows).ToHaveCountAsync(3);
        var ran = await StartChainAsync(name, "workflows");
        var row = page.Locator($"[data-workflow-id='{ran}']");
        await Expect(rows).ToHaveCountAsync(4);
        await Expect(row.Locator(".badge")).ToHaveTextAsync("succeeded");
        await Expect(row.Locator("[data-field=progress]")).ToHaveTextAsync("2/2 succeeded");
        await BrowserFixture.ScreenshotAsync(page, "workflows");
        foreach (var id in held)
        {
            await Server.PostAsync($"api/v1/workflows/{id}/cancel", "", HttpStatusCode.OK);
        }
    }

    private static async Task<List<string>> RowIdsAsync(ILocator rows)
    {
        var ids = new List<string>();
        foreach (var row in await rows.AllAsync())
        {
            ids.Add((await row.GetAttributeAsync("data-workflow-id"))!);
        }
        return ids;
    }

    [Fact]
    public async Task Cancel_asks_for_confirmation_and_cancels_the_workflow_and_retry_runs_it_again()
    {
        var name = Unique("cancelled");
        var id = await StartAsync(JsonSerializer.Serialize(new
        {
            name,
            steps = new object[]
            {
                new { id = "fetch", task = "conveyor.noop", queue = "workflows-held" },
                new { id = "index", task = "conveyor.noop", queue = "workflows-held", after = new[] { "fetch" } },
                new { id = "thumbs", task = "conveyor.noop", queue = "workflows-held", after = new[] { "fetch" } },
            },
        }));
        var page = await fixture.NewPageAsync();
        await page.GotoAsync(Url($"workflows/{id}"));
        var head = page.Locator("[data-section=workflow-head] .badge");
        await Expect(head).ToHaveTextAsync("running");
        await Expect(page.Locator("[data-layer='1'] [data-step-id]")).ToHaveCountAsync(2);
        await Expect(page.Locator("svg.edges path")).ToHaveCountAsync(2);

        // Dismissed: nothing happens.
        await page.GetByRole(AriaRole.Button, new() { Name = "Cancel workflow…" }).ClickAsync();
        var dialog = page.GetByRole(AriaRole.Dialog);
        await Expect(dialog).ToContainTextAsync("Cancel this workflow?");
        await Expect(dialog).ToContainTextAsync(name);
        await dialog.GetByRole(AriaRole.Button, new() { Name = "Cancel", Exact = true }).ClickAsync();
        await Expect(dialog).Not.ToBeVisibleAsync();
        Assert.Equal("running", (await Server.GetAsync($"api/v1/workflows/{id}")).GetProperty("state").GetString());

        await page.GetByRole(AriaRole.Button, new() { Name = "Cancel workflow…" }).ClickAsync();
        await dialog.GetByRole(AriaRole.Button, new() { Name = "Cancel workflow" }).ClickAsync();
        await Expect(head).ToHaveTextAsync("cancelled");
        foreach (var step in new[] { "fetch", "index", "thumbs" })
        {
            await Expect(page.Locator($"[data-step-id='{step}']")).ToHaveAttributeAsync("data-state", "cancelled");
        }
        await Expect(page.Locator(".notice").Last).ToContainTextAsync("Workflow cancelled");
        var cancelled = await Server.GetAsync($"api/v1/workflows/{id}");
        Assert.Equal("cancelled", cancelled.GetProperty("state").GetString());
        Assert.All(cancelled.GetProperty("steps").EnumerateArray(), s => Assert.Equal("cancelled", s.GetProperty("state").GetString()));
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Cancel workflow…" })).ToHaveCountAsync(0);

        // Retry: running again from its cancelled steps, the first queued, the others waiting for it.
        await page.GetByRole(AriaRole.Button, new() { Name = "Retry workflow…" }).ClickAsync();
        await Expect(dialog).ToContainTextAsync("Retry this workflow?");
        await dialog.GetByRole(AriaRole.Button, new() { Name = "Retry workflow" }).ClickAsync();
        await Expect(head).ToHaveTextAsync("running");
        await Expect(page.Locator("[data-step-id='fetch']")).ToHaveAttributeAsync("data-state", "queued");
        await Expect(page.Locator("[data-step-id='index']")).ToHaveAttributeAsync("data-state", "pending");
        await WaitForWorkflowAsync(id, "running");

        // Cancelled elsewhere (here over HTTP): the open page follows, without a reload.
        await page.EvaluateAsync("() => { window.conveyorTestMarker = 'not reloaded'; }");
        await Server.PostAsync($"api/v1/workflows/{id}/cancel", "", HttpStatusCode.OK);
        await Expect(head).ToHaveTextAsync("cancelled");
        await Expect(page.Locator("[data-step-id='fetch']")).ToHaveAttributeAsync("data-state", "cancelled");
        Assert.Equal("not reloaded", await page.EvaluateAsync<string>("() => window.conveyorTestMarker"));
    }

    [Fact]
    public async Task Failed_workflow_shows_the_failed_step_its_error_and_the_error_step()
    {
        var id = await StartAsync(JsonSerializer.Serialize(new
        {
            name = Unique("failing"),
            onError = new { id = "alert", task = "conveyor.noop", queue = "workflows" },
            steps = new object[]
            {
                new { id = "fetch", task = "http.request", args = new { url = "http://127.0.0.1:1/unreachable" }, queue = "workflows", maxAttempts = 1 },
                new { id = "index", task = "conveyor.noop", queue = "workflows", after = new[] { "fetch" } },
            },
        }));
        var page = await fixture.NewPageAsync();
        await page.GotoAsync(Url($"workflows/{id}"));
        await Expect(page.Locator("[data-section=workflow-head] .badge")).ToHaveTextAsync("failed");
        var fetch = page.Locator("[data-section=graph] [data-step-id='fetch']");
        await Expect(fetch).ToHaveAttributeAsync("data-state", "dead");
        await Expect(fetch.Locator(".step-error")).ToContainTextAsync("HttpRequestException");
        await Expect(page.Locator("[data-step-id='index']")).ToHaveAttributeAsync("data-state", "cancelled");
        // The error step is shown apart from the graph, and ran once.
        var alert = page.Locator("[data-section=error-step] [data-step-id='alert']");
        await Expect(alert).ToHaveAttributeAsync("data-state", "succeeded");
        await Expect(page.Locator("[data-section=graph] [data-step-id='alert']")).ToHaveCountAsync(0);
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Retry workflow…" })).ToBeVisibleAsync();
        await BrowserFixture.ScreenshotAsync(page, "workflow-failed");
    }

    [Fact]
    public async Task Chord_of_many_members_shows_the_first_of_its_layer_more_on_demand_and_every_step_in_the_list()
    {
        var members = Enumerable.Range(0, 40).Select(i => new { task = "conveyor.noop", args = new { member = i }, queue = "workflows-held" });
        var id = await StartAsync(JsonSerializer.Serialize(new
        {
            name = Unique("chord"),
            chord = new { group = members, callback = new { task = "conveyor.noop", queue = "workflows-held" } },
        }));
        var page = await fixture.NewPageAsync(new BrowserNewContextOptions
        {
            ViewportSize = new ViewportSize { Width = 390, Height = 844 },
            ColorScheme = ColorScheme.Dark,
            IsMobile = true,
            HasTouch = true,
        });
        await page.GotoAsync(Url($"workflows/{id}"));
        var members0 = page.Locator("[data-layer='0'] [data-step-id]");
        await Expect(members0).ToHaveCountAsync(12);
        await Expect(page.Locator("[data-more-layer='0']")).ToContainTextAsync("+28 more");
        await Expect(page.Locator("[data-layer='1'] [data-step-id='callback']")).ToHaveAttributeAsync("data-state", "pending");
        // Twelve members drawn, and one edge from the rest of them.
        await Expect(page.Locator("svg.edges path")).ToHaveCountAsync(13);
        var overflow = await page.EvaluateAsync<bool>("() => document.documentElement.scrollWidth > window.innerWidth + 1");
        Assert.False(overflow, "the workflow page scrolls sideways on a phone");
        await BrowserFixture.ScreenshotAsync(page, "workflow-chord-phone-dark");

        // By keyboard: the button that shows the rest of the layer.
        await page.GetByRole(AriaRole.Button, new() { Name = "Show 28 more steps of layer 1" }).FocusAsync();
        await page.Keyboard.PressAsync("Enter");
        await Expect(members0).ToHaveCountAsync(40);
        await Expect(page.Locator("[data-more-layer='0']")).ToHaveCountAsync(0);
        await Expect(page.Locator("svg.edges path")).ToHaveCountAsync(40);

        // The list view: every step in a table, filtered by state.
        await page.GetByRole(AriaRole.Button, new() { Name = "List", Exact = true }).ClickAsync();
        var rows = page.Locator("table.steps tbody tr");
        await Expect(rows).ToHaveCountAsync(41);
        Assert.Contains("view=list", page.Url, StringComparison.Ordinal);
        await page.Locator("select[name=step-state]").SelectOptionAsync("pending");
        await Expect(rows).ToHaveCountAsync(1);
        await Expect(rows.First).ToHaveAttributeAsync("data-step-id", "callback");
        await Server.PostAsync($"api/v1/workflows/{id}/cancel", "", HttpStatusCode.OK);
    }

    [Fact]
    public async Task With_keys_cancel_through_the_page_carries_the_CSRF_token_and_a_forged_one_is_refused()
    {
        const string key = "dashboard-workflow-key-2c9e-0123456789abcdef";
        await using var server = await DashboardServer.StartAsync(apiKey: key);
        var id = (await server.PostAsync("api/v1/workflows", JsonSerializer.Serialize(new
        {
            chain = new[] { new { task = "conveyor.noop", queue = "workflows-held" }, new { task = "conveyor.noop", queue = "workflows-held" } },
        }))).GetProperty("id").GetString()!;
        var page = await fixture.NewPageAsync();
        await page.GotoAsync(new Uri(server.BaseAddress, $"workflows/{id}").ToString());
        await page.GetByLabel("API key").FillAsync(key);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        var head = page.Locator("[data-section=workflow-head] .badge");
        await Expect(head).ToHaveTextAsync("running");

        // The session cookie alone, as a forged request would send it: refused, nothing changed.
        var forged = await page.EvaluateAsync<int>($"async () => (await fetch('api/v1/workflows/{id}/cancel', {{ method: 'POST' }})).status");
        Assert.Equal(403, forged);
        Assert.Equal("running", (await server.GetAsync($"api/v1/workflows/{id}")).GetProperty("state").GetString());

        await page.GetByRole(AriaRole.Button, new() { Name = "Cancel workflow…" }).ClickAsync();
        await page.GetByRole(AriaRole.Dialog).GetByRole(AriaRole.Button, new() { Name = "Cancel workflow" }).ClickAsync();
        await Expect(head).ToHaveTextAsync("cancelled");
        Assert.Equal("cancelled", (await server.GetAsync($"api/v1/workflows/{id}")).GetProperty("state").GetString());
    }

    [Fact]
    public async Task Unknown_workflow_id_says_so()
    {
        var page = await fixture.NewPageAsync();
        // The server answers the page for the workflow routes; the page asks the API, which knows no such workflow.
        Assert.Equal(200, (await page.GotoAsync(Url($"workflows/{Guid.CreateVersion7()}")))!.Status);
        await Expect(page.Locator(".note.error")).ToContainTextAsync("No workflow with this id");
    }
}
