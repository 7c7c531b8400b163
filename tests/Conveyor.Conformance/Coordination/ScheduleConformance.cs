using Conveyor.Scheduling;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Conformance;

/// <summary>Schedule state (the coordination role's <see cref="IScheduleStore"/>): a versioned document per schedule,
/// changed only by compare-and-set; and <see cref="IScheduleClient"/> over it, as the HTTP API uses it.</summary>
public abstract class ScheduleConformance<TFactory>() : ConformanceTest(new TFactory())
    where TFactory : IConformanceBackendFactory, new()
{
    private IScheduleStore Schedules => Backend.Schedules;

    private static StoredSchedule Stored(string name, long version, string document = """{"a":1}""") => new(name, version, document);

    [Fact]
    public async Task Add_stores_the_document_and_a_second_add_of_the_name_changes_nothing()
    {
        Assert.True(await Schedules.AddScheduleAsync(Stored("nightly", 1, """{"first":true}"""), Timeout));

        Assert.False(await Schedules.AddScheduleAsync(Stored("nightly", 1, """{"first":false}"""), Timeout));

        var stored = await Schedules.GetScheduleAsync("nightly", Timeout);
        Assert.Equal(Stored("nightly", 1, """{"first":true}"""), stored);
    }

    [Fact]
    public async Task Get_of_an_unknown_name_is_null_and_list_is_empty_at_first()
    {
        Assert.Null(await Schedules.GetScheduleAsync("none", Timeout));
        Assert.Empty(await Schedules.ListSchedulesAsync(Timeout));
    }

    [Fact]
    public async Task List_returns_every_schedule_ordered_by_name()
    {
        foreach (var name in new[] { "b.two", "a-one", "c_three", "B" })
        {
            Assert.True(await Schedules.AddScheduleAsync(Stored(name, 1, $$"""{"name":"{{name}}"}"""), Timeout));
        }

        var listed = await Schedules.ListSchedulesAsync(Timeout);

        Assert.Equal(["B", "a-one", "b.two", "c_three"], listed.Select(s => s.Name));
        Assert.All(listed, s => Assert.Equal($$"""{"name":"{{s.Name}}"}""", s.Document));
    }

    [Fact]
    public async Task Replace_with_the_stored_version_writes_and_with_any_other_changes_nothing()
    {
        await Schedules.AddScheduleAsync(Stored("s", 1, """{"v":1}"""), Timeout);

        Assert.False(await Schedules.ReplaceScheduleAsync(Stored("s", 3, """{"v":3}"""), expectedVersion: 2, Timeout));
        Assert.True(await Schedules.ReplaceScheduleAsync(Stored("s", 2, """{"v":2}"""), expectedVersion: 1, Timeout));
        Assert.False(await Schedules.ReplaceScheduleAsync(Stored("s", 2, """{"v":"stale"}"""), expectedVersion: 1, Timeout));

        Assert.Equal(Stored("s", 2, """{"v":2}"""), await Schedules.GetScheduleAsync("s", Timeout));
    }

    [Fact]
    public async Task Replace_of_a_missing_schedule_is_false_and_adds_nothing()
    {
        Assert.False(await Schedules.ReplaceScheduleAsync(Stored("ghost", 2), expectedVersion: 1, Timeout));

        Assert.Null(await Schedules.GetScheduleAsync("ghost", Timeout));
    }

    [Fact]
    public async Task Delete_removes_once()
    {
        await Schedules.AddScheduleAsync(Stored("s", 1), Timeout);

        Assert.True(await Schedules.DeleteScheduleAsync("s", Timeout));
        Assert.False(await Schedules.DeleteScheduleAsync("s", Timeout));

        Assert.Null(await Schedules.GetScheduleAsync("s", Timeout));
        Assert.True(await Schedules.AddScheduleAsync(Stored("s", 1), Timeout));
    }

    [Fact]
    public async Task A_large_document_with_any_characters_comes_back_unchanged()
    {
        var document = "{\"args\":\"" + string.Concat(Enumerable.Repeat("é€😀\\\"'\\n\t;--", 3000)) + "\"}";

        await Schedules.AddScheduleAsync(Stored("big", 1, document), Timeout);

        Assert.Equal(document, (await Schedules.GetScheduleAsync("big", Timeout))!.Document);
    }

    [Fact]
    public async Task Concurrent_replaces_of_one_version_from_two_instances_let_exactly_one_win()
    {
        var peer = await NewPeerAsync();
        for (var round = 1; round <= 20; round++)
        {
            await (round == 1 ? Schedules.AddScheduleAsync(Stored("race", 1), Timeout) : Task.FromResult(true));
            var version = round;
            var results = await Task.WhenAll(
                Schedules.ReplaceScheduleAsync(Stored("race", version + 1, $$"""{"by":"a","round":{{round}}}"""), version, Timeout),
                peer.Schedules.ReplaceScheduleAsync(Stored("race", version + 1, $$"""{"by":"b","round":{{round}}}"""), version, Timeout));

            Assert.Equal(1, results.Count(won => won));
            var stored = await peer.Schedules.GetScheduleAsync("race", Timeout);
            Assert.Equal(version + 1, stored!.Version);
            Assert.Contains(results[0] ? "\"by\":\"a\"" : "\"by\":\"b\"", stored.Document, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task The_client_creates_pauses_resumes_updates_and_deletes_a_schedule()
    {
        var client = Client();
        var created = await client.CreateAsync(new ScheduleDefinition
        {
            Name = "nightly",
            Cron = "0 0 3 * * *",
            TimeZone = "Europe/Paris",
            Task = "reports.nightly",
            Args = """{"format":"pdf","pages":[1,2]}""",
            Queue = "reports",
            Priority = 5,
            MaxAttempts = 3,
        }, Timeout);
        Assert.Equal(1, created.Version);

        var read = await client.GetAsync("nightly", Timeout);
        Assert.Equal(created.Definition, read!.Definition);
        Assert.Equal(ScheduleSource.Api, read.Source);
        Assert.False(read.Paused);
        Assert.Equal(Now, read.DoneUntil);

        var duplicate = await Assert.ThrowsAsync<ScheduleValidationException>(() => client.CreateAsync(created.Definition with { Cron = "0 * * * *" }, Timeout));
        Assert.Equal("name", Assert.Single(duplicate.Errors).Field);

        Assert.True((await client.PauseAsync("nightly", Timeout))!.Paused);
        Advance(TimeSpan.FromHours(30));
        var resumed = await client.ResumeAsync("nightly", Timeout);
        Assert.False(resumed!.Paused);
        Assert.Equal(Now, resumed.DoneUntil);

        var updated = await client.UpdateAsync(created.Definition with { Queue = "other" }, Timeout);
        Assert.Equal("other", updated!.Definition.Queue);
        Assert.Equal(4, updated.Version);
        Assert.Equal("other", (await client.GetAsync("nightly", Timeout))!.Definition.Queue);

        Assert.Null(await client.UpdateAsync(created.Definition with { Name = "missing" }, Timeout));
        Assert.True(await client.DeleteAsync("nightly", Timeout));
        Assert.Empty(await client.ListAsync(Timeout));
    }

    [Fact]
    public async Task A_trigger_enqueues_the_schedules_task_now_with_its_settings()
    {
        var client = Client();
        await client.CreateAsync(new ScheduleDefinition
        {
            Name = "every-minute",
            Every = TimeSpan.FromMinutes(1),
            Task = "ping",
            Args = """{"host":"a"}""",
            Queue = "pings",
            Priority = 7,
        }, Timeout);

        var result = await client.TriggerAsync("every-minute", Timeout);

        var task = await Store.GetAsync(result!.Value.Id, Timeout);
        Assert.Equal("ping", task!.Task);
        Assert.Equal("pings", task.Queue);
        Assert.Equal(7, task.Priority);
        Assert.Equal("""{"host":"a"}""", task.Args);
        Assert.Equal("every-minute", task.Headers![Schedule.ScheduleHeader]);
        Assert.Null(await client.TriggerAsync("missing", Timeout));
    }

    private IScheduleClient Client()
    {
        var services = new ServiceCollection();
        services.AddSingleton(Time);
        services.AddConveyorClient().UseBackend(_ => Backend);
        return services.BuildServiceProvider().GetRequiredService<IScheduleClient>();
    }
}
