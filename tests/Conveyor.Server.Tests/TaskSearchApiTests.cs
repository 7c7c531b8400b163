using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Conveyor.Server.Tests;

/// <summary><c>GET /api/v1/tasks</c> with the dashboard's filters: created between two times, and text in arguments or errors.</summary>
public sealed class TaskSearchApiTests(OpenServerFixture fixture) : IClassFixture<OpenServerFixture>
{
    private TestServer Server => fixture.Server;

    private async Task<List<Guid>> ListAllAsync(string query)
    {
        var ids = new List<Guid>();
        string? cursor = null;
        do
        {
            var page = await Server.Client.GetFromJsonAsync<JsonElement>($"/api/v1/tasks?{query}{(cursor is null ? "" : $"&cursor={Uri.EscapeDataString(cursor)}")}");
            ids.AddRange(page.GetProperty("items").EnumerateArray().Select(t => t.GetProperty("id").GetGuid()));
            cursor = page.GetProperty("nextCursor").GetString();
        }
        while (cursor is not null);
        return ids;
    }

    [Fact]
    public async Task Text_matches_arguments_case_insensitively_across_pages_each_match_once()
    {
        var queue = "search-" + Guid.NewGuid().ToString("N")[..8];
        var matches = new List<Guid>();
        for (var i = 0; i < 7; i++)
        {
            var id = await Server.EnqueueAsync(new { task = "conveyor.noop", queue, args = new { note = i % 2 == 0 ? $"Flight-KLM-{i}" : $"other-{i}" } });
            if (i % 2 == 0)
            {
                matches.Add(id);
            }
        }
        matches.Reverse();

        Assert.Equal(matches, await ListAllAsync($"queue={queue}&text=flight-klm&limit=2"));
        Assert.Equal(matches[..1], await ListAllAsync($"queue={queue}&text=KLM-6"));
        Assert.Empty(await ListAllAsync($"queue={queue}&text=nowhere"));
    }

    [Fact]
    public async Task Text_matches_errors_and_stack_traces()
    {
        var id = await Server.EnqueueAsync(new { task = "http.request", queue = "default", maxAttempts = 1, args = new { url = "http://127.0.0.1:1/search-error" } });
        await Server.WaitForStateAsync(id, "dead");

        Assert.Contains(id, await ListAllAsync("state=dead&text=connection%20refused"));
        Assert.Contains(id, await ListAllAsync("state=dead&text=System.Net.Sockets"));
    }

    [Fact]
    public async Task Created_between_keeps_the_tasks_made_in_the_range()
    {
        var queue = "range-" + Guid.NewGuid().ToString("N")[..8];
        var before = await Server.EnqueueAsync(new { task = "conveyor.noop", queue });
        var from = (await Server.GetTaskAsync(before)).GetProperty("createdAt").GetDateTimeOffset().AddMilliseconds(1);
        await Task.Delay(20);
        var inside = await Server.EnqueueAsync(new { task = "conveyor.noop", queue });
        var to = (await Server.GetTaskAsync(inside)).GetProperty("createdAt").GetDateTimeOffset().AddMilliseconds(1);
        await Task.Delay(20);
        await Server.EnqueueAsync(new { task = "conveyor.noop", queue });
        string Time(DateTimeOffset t) => Uri.EscapeDataString(t.ToString("O", System.Globalization.CultureInfo.InvariantCulture));

        Assert.Equal([inside], await ListAllAsync($"queue={queue}&createdAfter={Time(from)}&createdBefore={Time(to)}"));
        Assert.Equal(2, (await ListAllAsync($"queue={queue}&createdAfter={Time(from)}")).Count);
        Assert.Equal(2, (await ListAllAsync($"queue={queue}&createdBefore={Time(to)}")).Count);
    }

    [Theory]
    [InlineData("createdAfter=yesterday", "createdAfter")]
    [InlineData("createdBefore=2026-01-01T00:00:00", "createdBefore")]
    [InlineData("createdAfter=2026-02-01T00:00:00Z&createdBefore=2026-01-01T00:00:00Z", "createdBefore")]
    public async Task Bad_search_parameters_are_400_naming_the_field(string query, string field)
    {
        using var response = await Server.Client.GetAsync($"/api/v1/tasks?{query}");
        var problem = await ApiValidationTests.AssertProblemAsync(response, HttpStatusCode.BadRequest);
        ApiValidationTests.AssertNamesField(problem, field);
    }

    [Fact]
    public async Task Text_longer_than_200_characters_is_400()
    {
        using var response = await Server.Client.GetAsync($"/api/v1/tasks?text={new string('x', 201)}");
        ApiValidationTests.AssertNamesField(await ApiValidationTests.AssertProblemAsync(response, HttpStatusCode.BadRequest), "text");
    }
}
