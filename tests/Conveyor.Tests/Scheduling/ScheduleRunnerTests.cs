using Conveyor.Backends;
using Conveyor.Scheduling;
using Conveyor.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace Conveyor.Tests.Scheduling;

/// <summary>The leader's passes over the schedules, on the in-memory backend and a fake clock: which ticks fire, once
/// each, what misfire policies do after downtime, pause and resume, and schedules declared in code.</summary>
public sealed class ScheduleRunnerTests
{
    private static readonly DateTimeOffset Start = new(2027, 1, 4, 10, 0, 0, TimeSpan.Zero);

    private sealed class Process : IDisposable
    {
        private readonly ServiceProvider _services;

        public Process(InMemoryStorage storage, FakeTimeProvider time, Action<ConveyorBuilder>? configure = null)
        {
            var services = new ServiceCollection();
            services.AddLogging(l => l.ClearProviders());
            services.AddSingleton<TimeProvider>(time);
            var builder = services.AddConveyor(o => o.RunWorker = false).UseInMemoryBackend(storage);
            configure?.Invoke(builder);
            _services = services.BuildServiceProvider();
            Runner = ActivatorUtilities.CreateInstance<ScheduleRunner>(_services);
            Client = _services.GetRequiredService<IScheduleClient>();
            Backend = _services.GetRequiredService<InMemoryBackend>();
        }

        public ScheduleRunner Runner { get; }

        public IScheduleClient Client { get; }

        public InMemoryBackend Backend { get; }

        public void Dispose() => _services.Dispose();
    }

    private static async Task<List<TaskRecord>> TasksAsync(InMemoryBackend backend)
    {
        var page = await backend.ListAsync(new TaskQuery { Limit = 1000 }, CancellationToken.None);
        return [.. page.Items.OrderBy(t => t.Headers![Schedule.TickHeader], StringComparer.Ordinal)];
    }

    private static DateTimeOffset Tick(TaskRecord task) => DateTimeOffset.Parse(task.Headers![Schedule.TickHeader], System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public async Task Each_tick_of_an_interval_fires_once_with_its_key_and_headers()
    {
        var time = new FakeTimeProvider(Start);
        using var process = new Process(new InMemoryStorage(), time);
        await process.Client.CreateAsync(new ScheduleDefinition { Name = "beat", Every = TimeSpan.FromSeconds(1), Task = "t", Args = """{"x":1}""" });

        time.Advance(TimeSpan.FromSeconds(3.5));
        var pause = await process.Runner.PassAsync(CancellationToken.None);
        await process.Runner.PassAsync(CancellationToken.None);

        var tasks = await TasksAsync(process.Backend);
        Assert.Equal([Start.AddSeconds(1), Start.AddSeconds(2), Start.AddSeconds(3)], tasks.Select(Tick));
        Assert.All(tasks, t => Assert.Equal("beat", t.Headers![Schedule.ScheduleHeader]));
        Assert.All(tasks, t => Assert.Equal("""{"x":1}""", t.Args));
        Assert.Equal(Schedule.TickKey("beat", Start.AddSeconds(3)), tasks[^1].IdempotencyKey);
        Assert.Equal(TimeSpan.FromSeconds(0.5), pause);
        var schedule = await process.Client.GetAsync("beat");
        Assert.Equal(Start.AddSeconds(3), schedule!.LastFireAt);
        Assert.Equal(tasks[^1].Id, schedule.LastTaskId);
        Assert.Equal(time.GetUtcNow(), schedule.DoneUntil);
    }

    [Fact]
    public async Task Two_leaders_passing_at_once_on_one_backend_fire_each_tick_exactly_once()
    {
        var storage = new InMemoryStorage();
        var time = new FakeTimeProvider(Start);
        using var a = new Process(storage, time);
        using var b = new Process(storage, time);
        await a.Client.CreateAsync(new ScheduleDefinition { Name = "beat", Every = TimeSpan.FromSeconds(1), Task = "t" });

        for (var second = 0; second < 50; second++)
        {
            time.Advance(TimeSpan.FromMilliseconds(second % 3 == 0 ? 2300 : 700));
            await Task.WhenAll(a.Runner.PassAsync(CancellationToken.None), b.Runner.PassAsync(CancellationToken.None));
        }

        var ticks = (await TasksAsync(a.Backend)).Select(Tick).ToList();
        var expected = Enumerable.Range(1, (int)(time.GetUtcNow() - Start).TotalSeconds).Select(s => Start.AddSeconds(s)).ToList();
        Assert.Equal(expected, ticks);
    }

    [Theory]
    [InlineData(MisfirePolicy.Skip, 0)]
    [InlineData(MisfirePolicy.FireOnce, 1)]
    [InlineData(MisfirePolicy.FireAll, 5)]
    public async Task After_downtime_missed_ticks_follow_the_misfire_policy_and_ticks_within_the_grace_fire(MisfirePolicy policy, int missedFired)
    {
        var time = new FakeTimeProvider(Start);
        using var process = new Process(new InMemoryStorage(), time);
        await process.Client.CreateAsync(new ScheduleDefinition
        {
            Name = "minutely",
            Cron = "0 * * * * *",
            Task = "t",
            Misfire = policy,
            MisfireGrace = TimeSpan.FromSeconds(150),
            MaxCatchUp = 5,
        });

        // Down 10 minutes: ticks at 10:01 … 10:10; with 150 s of grace at 10:10:30, 10:08, 10:09 and 10:10 are on time.
        time.Advance(TimeSpan.FromMinutes(10.5));
        await process.Runner.PassAsync(CancellationToken.None);

        var ticks = (await TasksAsync(process.Backend)).Select(Tick).ToList();
        var onTime = new[] { 8, 9, 10 }.Select(m => Start.AddMinutes(m));
        var missed = Enumerable.Range(1, 7).Select(m => Start.AddMinutes(m)).TakeLast(missedFired);
        Assert.Equal(missed.Concat(onTime), ticks);
        Assert.Equal(7 - missedFired, (await process.Client.GetAsync("minutely"))!.Missed);
    }

    [Fact]
    public async Task Ticks_that_fall_while_paused_never_fire_and_resume_fires_from_then_on()
    {
        var time = new FakeTimeProvider(Start);
        using var process = new Process(new InMemoryStorage(), time);
        await process.Client.CreateAsync(new ScheduleDefinition { Name = "beat", Every = TimeSpan.FromSeconds(10), Task = "t" });
        await process.Client.PauseAsync("beat");

        time.Advance(TimeSpan.FromSeconds(35));
        await process.Runner.PassAsync(CancellationToken.None);
        Assert.Empty(await TasksAsync(process.Backend));
        Assert.Empty((await process.Client.GetAsync("beat"))!.NextFireTimes(time.GetUtcNow(), 3));

        await process.Client.ResumeAsync("beat");
        time.Advance(TimeSpan.FromSeconds(10));
        await process.Runner.PassAsync(CancellationToken.None);

        Assert.Equal([Start.AddSeconds(40)], (await TasksAsync(process.Backend)).Select(Tick));
    }

    [Fact]
    public async Task A_schedule_declared_in_code_is_written_at_the_first_pass_and_redefined_keeping_its_state()
    {
        var storage = new InMemoryStorage();
        var time = new FakeTimeProvider(Start);
        var first = new ScheduleDefinition { Name = "nightly", Cron = "0 0 3 * * *", TimeZone = "Europe/Paris", Task = "reports", Queue = "a" };
        using (var process = new Process(storage, time, b => b.AddSchedule(first)))
        {
            await process.Runner.PassAsync(CancellationToken.None);
            await process.Client.PauseAsync("nightly");
            var stored = await process.Client.GetAsync("nightly");
            Assert.Equal(first, stored!.Definition);
            Assert.Equal(ScheduleSource.Code, stored.Source);
        }

        using var next = new Process(storage, time, b => b.AddSchedule(first with { Queue = "b" }));
        await next.Runner.PassAsync(CancellationToken.None);

        var redefined = await next.Client.GetAsync("nightly");
        Assert.Equal("b", redefined!.Definition.Queue);
        Assert.True(redefined.Paused);
    }

    [Fact]
    public async Task A_schedule_whose_task_the_client_refuses_drops_its_ticks_and_the_others_still_fire()
    {
        var time = new FakeTimeProvider(Start);
        using var process = new Process(new InMemoryStorage(), time);
        // Stored around the client's checks, as an older version could have: the enqueue refuses the priority.
        var bad = new Schedule
        {
            Definition = new ScheduleDefinition { Name = "bad", Every = TimeSpan.FromSeconds(1), Task = "t", Priority = 1000 },
            DoneUntil = Start,
            Anchor = Start,
            CreatedAt = Start,
            UpdatedAt = Start,
        };
        await process.Backend.AddScheduleAsync(bad.ToStored(1), CancellationToken.None);
        await process.Client.CreateAsync(new ScheduleDefinition { Name = "good", Every = TimeSpan.FromSeconds(1), Task = "t" });

        time.Advance(TimeSpan.FromSeconds(2));
        await process.Runner.PassAsync(CancellationToken.None);

        Assert.Equal(["good", "good"], (await TasksAsync(process.Backend)).Select(t => t.Headers![Schedule.ScheduleHeader]));
        Assert.Equal(2, (await process.Client.GetAsync("bad"))!.Missed);
    }
}
