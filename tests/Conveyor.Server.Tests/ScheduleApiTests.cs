using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Conveyor.Server.Tests;

/// <summary><c>/api/v1/schedules</c> on a server with a worker and the scheduler: create (201 with next fire times),
/// every bad field refused with 422 naming it, get, update, pause, resume, trigger, delete; and the ticks fire.</summary>
public sealed class ScheduleApiTests(OpenServerFixture fixture) : IClassFixture<OpenServerFixture>
{
    private TestServer Server => fixture.Server;

    private static string Unique(string name) => $"{name}-{Guid.NewGuid():N}"[..30];

    [Fact]
    public async Task Create_answers_201_with_the_schedule_and_its_next_fire_times_in_its_time_zone()
    {
        var name = Unique("nightly");
        using var response = await Server.Client.PostAsJsonAsync("/api/v1/schedules", new
        {
            name,
            cron = "0 0 3 * * *",
            timeZone = "Europe/Paris",
            task = "conveyor.noop",
            args = new { report = "daily" },
            queue = "default",
        });

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        Assert.Equal($"/api/v1/schedules/{name}", response.Headers.Location?.OriginalString);
        var created = await TestServer.ReadJsonAsync(response);
        Assert.Equal(name, created.GetProperty("name").GetString());
        Assert.Equal("daily", created.GetProperty("args").GetProperty("report").GetString());
        Assert.Equal("api", created.GetProperty("source").GetString());
        var next = created.GetProperty("nextFireTimes").EnumerateArray().Select(t => t.GetDateTimeOffset()).ToList();
        Assert.Equal(5, next.Count);
        var paris = TimeZoneInfo.FindSystemTimeZoneById("Europe/Paris");
        Assert.All(next, t => Assert.Equal(new TimeSpan(3, 0, 0), TimeZoneInfo.ConvertTime(t, paris).TimeOfDay));
        Assert.All(next.Zip(next.Skip(1)), pair => Assert.InRange(pair.Second - pair.First, TimeSpan.FromHours(23), TimeSpan.FromHours(25)));

        var read = await Server.Client.GetFromJsonAsync<JsonElement>($"/api/v1/schedules/{name}");
        Assert.Equal("0 0 3 * * *", read.GetProperty("cron").GetString());
        var listed = await Server.Client.GetFromJsonAsync<JsonElement>("/api/v1/schedules");
        Assert.Contains(listed.EnumerateArray(), s => s.GetProperty("name").GetString() == name);
    }

    [Theory]
    [InlineData("""{"name":"%","cron":"0 0 3 * *x","task":"conveyor.noop"}""", "cron", "is not a valid cron expression")]
    [InlineData("""{"name":"%","cron":"0 0 3 * * *","timeZone":"Mars/Olympus","task":"conveyor.noop"}""", "timeZone", "is not a known time zone")]
    [InlineData("""{"name":"%","every":"PT0.5S","task":"conveyor.noop"}""", "every", "at least 1 second")]
    [InlineData("""{"name":"%","every":"soon","task":"conveyor.noop"}""", "every", "ISO 8601 duration")]
    [InlineData("""{"name":"%","task":"conveyor.noop"}""", "cron", "give 'cron'")]
    [InlineData("""{"name":"%","every":"PT1S","task":"no.such.task"}""", "task", "known tasks: ")]
    [InlineData("""{"name":"%","every":"PT1S","task":"conveyor.noop","misfire":"sometimes"}""", "misfire", "fireOnce, skip, fireAll")]
    [InlineData("""{"name":"%","every":"PT1S","task":"conveyor.noop","cadence":"daily"}""", "cadence", "not a field of a schedule")]
    [InlineData("""{"name":"bad name","every":"PT1S","task":"conveyor.noop"}""", "name", "not a valid schedule name")]
    public async Task Bad_input_is_refused_with_422_naming_the_field(string body, string field, string message)
    {
        using var response = await Server.PostJsonAsync("/api/v1/schedules", body.Replace("%", Unique("bad"), StringComparison.Ordinal));

        Assert.Equal(HttpStatusCode.UnprocessableEntity, response.StatusCode);
        var problem = await TestServer.ReadJsonAsync(response);
        var messages = problem.GetProperty("errors").GetProperty(field).EnumerateArray().Select(m => m.GetString()!).ToList();
        Assert.Contains(messages, m => m.Contains(message, StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_duplicate_name_is_refused_with_422_on_name()
    {
        var name = Unique("dup");
        using var first = await Server.Client.PostAsJsonAsync("/api/v1/schedules", new { name, every = "PT1H", task = "conveyor.noop" });
        Assert.Equal(HttpStatusCode.Created, first.StatusCode);

        using var second = await Server.Client.PostAsJsonAsync("/api/v1/schedules", new { name, every = "PT2H", task = "conveyor.noop" });

        Assert.Equal(HttpStatusCode.UnprocessableEntity, second.StatusCode);
        var problem = await TestServer.ReadJsonAsync(second);
        Assert.Contains("exists", problem.GetProperty("errors").GetProperty("name")[0].GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_per_second_schedule_fires_each_tick_once_and_update_pause_resume_trigger_and_delete_work()
    {
        var name = Unique("beat");
        using (var created = await Server.Client.PostAsJsonAsync("/api/v1/schedules", new { name, every = "PT1S", task = "conveyor.noop", args = new { n = 1 } }))
        {
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        }
        await FaultTests.WaitUntilAsync(async () => (await TicksAsync(name)).Count >= 3, TimeSpan.FromSeconds(20), "three ticks");

        using (var updated = await Server.Client.PutAsJsonAsync($"/api/v1/schedules/{name}", new { every = "PT1S", task = "conveyor.noop", args = new { n = 2 }, priority = 3 }))
        {
            Assert.Equal(HttpStatusCode.OK, updated.StatusCode);
            Assert.Equal(3, (await TestServer.ReadJsonAsync(updated)).GetProperty("priority").GetInt32());
        }
        using (var paused = await Server.Client.PostAsync($"/api/v1/schedules/{name}/pause", null))
        {
            var body = await TestServer.ReadJsonAsync(paused);
            Assert.True(body.GetProperty("paused").GetBoolean());
            Assert.Empty(body.GetProperty("nextFireTimes").EnumerateArray());
        }
        var atPause = await TicksAsync(name);
        Assert.Equal(atPause.Count, atPause.Distinct().Count());
        var ordered = atPause.Order().ToList();
        Assert.All(ordered.Zip(ordered.Skip(1)), pair => Assert.Equal(TimeSpan.FromSeconds(1), pair.Second - pair.First));

        using (var triggered = await Server.Client.PostAsync($"/api/v1/schedules/{name}/trigger", null))
        {
            Assert.Equal(HttpStatusCode.Accepted, triggered.StatusCode);
            var id = (await TestServer.ReadJsonAsync(triggered)).GetProperty("taskId").GetGuid();
            var task = await Server.WaitForStateAsync(id, "succeeded");
            Assert.Equal(2, task.GetProperty("args").GetProperty("n").GetInt32());
        }
        using (var resumed = await Server.Client.PostAsync($"/api/v1/schedules/{name}/resume", null))
        {
            Assert.False((await TestServer.ReadJsonAsync(resumed)).GetProperty("paused").GetBoolean());
        }
        using (var deleted = await Server.Client.DeleteAsync($"/api/v1/schedules/{name}"))
        {
            Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
        }
        using var gone = await Server.Client.GetAsync($"/api/v1/schedules/{name}");
        Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
        using var pauseGone = await Server.Client.PostAsync($"/api/v1/schedules/{name}/pause", null);
        Assert.Equal(HttpStatusCode.NotFound, pauseGone.StatusCode);
    }

    private async Task<List<DateTimeOffset>> TicksAsync(string schedule)
    {
        var page = await Server.Client.GetFromJsonAsync<JsonElement>("/api/v1/tasks?task=conveyor.noop&limit=1000");
        return page.GetProperty("items").EnumerateArray()
            .Where(t => t.GetProperty("headers").ValueKind == JsonValueKind.Object
                && t.GetProperty("headers").TryGetProperty("conveyor-schedule", out var s) && s.GetString() == schedule
                && t.GetProperty("headers").TryGetProperty("conveyor-schedule-tick", out _))
            .Select(t => t.GetProperty("headers").GetProperty("conveyor-schedule-tick").GetDateTimeOffset())
            .ToList();
    }
}
