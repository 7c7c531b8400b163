using System.Collections.Concurrent;
using System.Diagnostics;
using Conveyor.Backends;
using Conveyor.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor.Tests.Engine;

/// <summary>The limits stage of the worker through a real host on the in-memory backend: rate limits spaced and put back
/// unspent, concurrency limits per key, slots freed, configuration checked (docs/limits.md).</summary>
public sealed class LimitEngineTests
{
    [Fact]
    public async Task Rate_limit_spaces_the_starts_of_its_tasks_and_spends_no_attempt()
    {
        // 10/s: the first second's starts are held in the worker, the later ones put back to come at their times.
        await using var host = new EngineHost(c => c
            .AddTask<RecordedTask>(RecordedTask.Name, t => t.RateLimit = "10/s")
            .AddTask<RecordedTask>(WarmUpName), o => o.Worker.Concurrency = 8);
        await host.StartAsync();
        await WarmUpAsync(host);

        var ids = await EnqueueAsync(host, 14, _ => new TenantArgs("a", 0));
        var records = await WaitForAllAsync(host, ids);

        var starts = host.Services.GetRequiredService<Recorder>().Starts("a");
        Assert.Equal(14, starts.Count);
        // Reserved 100 ms apart from the first, and none starts before its time (a start may be late, by a timer or a
        // promotion on a loaded machine, and then bunch with the next: the first is allowed 150 ms of such lateness).
        for (var k = 1; k < starts.Count; k++)
        {
            Assert.True(starts[k] - starts[0] >= (TimeSpan.FromMilliseconds(100) * k) - TimeSpan.FromMilliseconds(150),
                $"start {k} came {(starts[k] - starts[0]).TotalMilliseconds:F0} ms after the first; starts: {string.Join(", ", starts.Select(s => (s - starts[0]).TotalMilliseconds.ToString("F0", System.Globalization.CultureInfo.InvariantCulture)))}");
        }
        Assert.True(starts[^1] - starts[0] >= TimeSpan.FromMilliseconds(1300) - TimeSpan.FromMilliseconds(150));
        Assert.All(records, r => Assert.Equal(1, r.Attempts));
        Assert.All(records, r => Assert.Empty(r.Errors));
        // Those put back carry the time reserved for them.
        Assert.Contains(records, r => r.Headers?.ContainsKey(LimitGate.RateSlotHeader) == true);
    }

    [Fact]
    public async Task Task_over_a_rate_limit_waits_unstarted_with_its_reserved_time_and_blocks_no_other_task()
    {
        await using var host = new EngineHost(c => c
            .AddTask<RecordedTask>(RecordedTask.Name, t => t.RateLimit = "1/m")
            .AddTask<CountingTask>(CountingTask.Name));
        await host.StartAsync();

        var ids = await EnqueueAsync(host, 2, _ => new TenantArgs("a", 0));
        var other = await host.Client.EnqueueAsync(CountingTask.Name);

        await host.WaitForStateAsync(other.Id, TaskState.Succeeded);
        var waiting = await host.WaitForAsync(ids[1], r => r.State == TaskState.Retrying);
        var first = await host.WaitForStateAsync(ids[0], TaskState.Succeeded);
        Assert.Equal(0, waiting.Attempts);
        Assert.Null(waiting.Error);
        Assert.Empty(waiting.Errors);
        var reserved = waiting.Headers![LimitGate.RateSlotHeader];
        Assert.StartsWith("1:", reserved, StringComparison.Ordinal);
        // One interval after the first start, which was now.
        var slot = LimitTimes.FromMicroseconds(long.Parse(reserved[2..], System.Globalization.CultureInfo.InvariantCulture));
        Assert.InRange(slot - first.StartedAt!.Value, TimeSpan.FromSeconds(59), TimeSpan.FromSeconds(61));
        Assert.Equal(slot, waiting.NotBefore);
        Assert.Single(host.Services.GetRequiredService<Recorder>().Starts());
    }

    [Fact]
    public async Task Concurrency_limit_per_argument_key_caps_the_running_tasks_of_each_key()
    {
        await using var host = new EngineHost(c => c.AddTask<RecordedTask>(RecordedTask.Name, t =>
        {
            t.ConcurrencyLimit = 2;
            t.ConcurrencyKeyPath = "tenant";
        }), o => o.Worker.Concurrency = 16);
        await host.StartAsync();

        var ids = await EnqueueAsync(host, 16, i => new TenantArgs(i % 2 == 0 ? "a" : "b", 150));
        var records = await WaitForAllAsync(host, ids);

        var recorder = host.Services.GetRequiredService<Recorder>();
        Assert.Equal(2, recorder.MostAtOnce("a"));
        Assert.Equal(2, recorder.MostAtOnce("b"));
        Assert.True(recorder.MostAtOnceOverall >= 3, $"at most {recorder.MostAtOnceOverall} ran at once: the two keys should run side by side");
        Assert.All(records, r => Assert.Equal(1, r.Attempts));
        // Every slot is freed once its task ended.
        await WaitUntilAsync(async () => (await host.Backend.GetUsageAsync(CancellationToken.None)).Concurrency.Count == 0, "the slots to be freed");
        Assert.Equal(0, host.Services.GetRequiredService<LimitGate>().HeldCount);
    }

    [Fact]
    public async Task Concurrency_limit_set_in_the_options_counts_every_task_of_its_queue()
    {
        await using var host = new EngineHost(c => c.AddTask<RecordedTask>(RecordedTask.Name), o =>
        {
            o.Worker.Concurrency = 16;
            o.Limits.Add(LimitRule.ForQueue(QueueNames.Default, concurrency: 3));
        });
        await host.StartAsync();

        var ids = await EnqueueAsync(host, 12, i => new TenantArgs("t" + i, 100));
        await WaitForAllAsync(host, ids);

        Assert.Equal(3, host.Services.GetRequiredService<Recorder>().MostAtOnceOverall);
    }

    [Fact]
    public async Task Limit_in_the_options_overrides_the_registration_one_setting_at_a_time()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Services.AddConveyor().AddTask<RecordedTask>(RecordedTask.Name, t =>
        {
            t.RateLimit = "5/s";
            t.ConcurrencyLimit = 2;
            t.ConcurrencyKeyFrom<TenantArgs>(a => a.Tenant);
        });
        using var host = builder.Build();

        var rules = LimitRules.Build([LimitRule.ForTask(RecordedTask.Name, concurrency: 7), LimitRule.ForQueue("mail", rate: "100/h")],
            host.Services.GetRequiredService<TaskRegistry>());

        var message = new TaskMessage { Id = Guid.NewGuid(), Task = RecordedTask.Name, Queue = "mail", Args = """{"tenant":"x","ms":0}""", CreatedAt = DateTimeOffset.UtcNow };
        var rates = new List<RateKey>();
        var concurrency = new List<ConcurrencyKey>();
        rules.Match(message, rates, concurrency);
        Assert.Equal([new RateKey("queue:mail", TimeSpan.FromSeconds(36)), new RateKey("task:" + RecordedTask.Name, TimeSpan.FromMilliseconds(200))], rates);
        Assert.Equal([new ConcurrencyKey("task:" + RecordedTask.Name + "#x", 7, "task:" + RecordedTask.Name)], concurrency);
    }

    [Theory]
    [InlineData("10/x")]
    [InlineData("0/s")]
    [InlineData("ten/m")]
    [InlineData("2000000/s")]
    public async Task Rate_that_is_not_N_per_second_minute_or_hour_stops_the_start_naming_its_key(string rate)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddConveyor(o =>
        {
            o.Limits.Add(LimitRule.ForQueue("mail", concurrency: 2));
            o.Limits.Add(LimitRule.ForTask("http.request", rate: rate));
        }).UseInMemoryBackend();
        using var host = builder.Build();

        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains($"Conveyor:Limits:1:Rate is '{rate}': use 'N/s', 'N/m' or 'N/h'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Limit_entries_that_cannot_work_are_all_reported()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddConveyor(o =>
        {
            o.Limits.Add(new LimitRule { Task = "a", Queue = "b", Rate = "1/s" });
            o.Limits.Add(new LimitRule { Queue = "no:colons", Concurrency = 0 });
            o.Limits.Add(new LimitRule { Task = "c" });
            o.Limits.Add(new LimitRule { Task = "d", Concurrency = 1, ConcurrencyKey = "a..b" });
            o.Limits.Add(new LimitRule { Task = "d", Rate = "1/h" });
        }).UseInMemoryBackend();
        using var host = builder.Build();

        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains("Conveyor:Limits:0 names both a Task and a Queue", error.Message, StringComparison.Ordinal);
        Assert.Contains("Conveyor:Limits:1:Queue 'no:colons' is not a queue name", error.Message, StringComparison.Ordinal);
        Assert.Contains("Conveyor:Limits:1:Concurrency is 0", error.Message, StringComparison.Ordinal);
        Assert.Contains("Conveyor:Limits:2 sets no limit", error.Message, StringComparison.Ordinal);
        Assert.Contains("Conveyor:Limits:3:ConcurrencyKey is 'a..b'", error.Message, StringComparison.Ordinal);
        Assert.Contains("Conveyor:Limits:4 limits task 'd' again", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Registration_with_a_bad_rate_limit_fails_naming_the_task()
    {
        var services = new ServiceCollection();

        var error = Assert.Throws<ArgumentException>(() => services.AddConveyor().AddTask<RecordedTask>(RecordedTask.Name, t => t.RateLimit = "10/x"));

        Assert.Contains($"Task '{RecordedTask.Name}': RateLimit '10/x' is not a rate limit", error.Message, StringComparison.Ordinal);
    }

    private const string WarmUpName = "test.recorded.warm-up";

    /// <summary>Runs the handler once under a name without limits, so that the first limited start is not late by the
    /// handler's cold start (JIT, the first DI scope) and the others bunched behind it.</summary>
    private static async Task WarmUpAsync(EngineHost host)
    {
        var warmUp = await host.Client.EnqueueAsync(WarmUpName, new TenantArgs("warm-up", 0));
        await host.WaitForStateAsync(warmUp.Id, TaskState.Succeeded);
    }

    private static async Task<List<Guid>> EnqueueAsync(EngineHost host, int count, Func<int, TenantArgs> args)
    {
        var results = await host.Client.EnqueueManyAsync(Enumerable.Range(0, count).Select(i => TaskRequest.Create(RecordedTask.Name, args(i))).ToList());
        return results.Select(r => r.Id).ToList();
    }

    private static async Task<List<TaskRecord>> WaitForAllAsync(EngineHost host, List<Guid> ids)
    {
        var records = new List<TaskRecord>();
        foreach (var id in ids)
        {
            records.Add(await host.WaitForStateAsync(id, TaskState.Succeeded));
        }
        return records;
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}");
            await Task.Delay(20);
        }
    }
}

/// <summary>Arguments of <see cref="RecordedTask"/>: a tenant (a concurrency key) and how long it runs.</summary>
internal sealed record TenantArgs(string Tenant, int Ms);

/// <summary>Records when each run starts and ends, and how many run at once, per tenant and in all.</summary>
internal sealed class Recorder
{
    private readonly ConcurrentQueue<(string Tenant, TimeSpan At)> _starts = new();
    private readonly ConcurrentDictionary<string, (int Now, int Most)> _byTenant = new(StringComparer.Ordinal);
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly Lock _gate = new();
    private int _running;

    public int MostAtOnceOverall { get; private set; }

    public int MostAtOnce(string tenant) => _byTenant.TryGetValue(tenant, out var counts) ? counts.Most : 0;

    public List<TimeSpan> Starts(string? tenant = null) => [.. _starts.Where(s => tenant is null || s.Tenant == tenant).Select(s => s.At).Order()];

    public void Started(string tenant)
    {
        _starts.Enqueue((tenant, _clock.Elapsed));
        lock (_gate)
        {
            MostAtOnceOverall = Math.Max(MostAtOnceOverall, ++_running);
            var (now, most) = _byTenant.GetValueOrDefault(tenant);
            _byTenant[tenant] = (now + 1, Math.Max(most, now + 1));
        }
    }

    public void Ended(string tenant)
    {
        lock (_gate)
        {
            _running--;
            var (now, most) = _byTenant[tenant];
            _byTenant[tenant] = (now - 1, most);
        }
    }
}

internal sealed class RecordedTask(Recorder recorder) : ITaskHandler<TenantArgs>
{
    public const string Name = "test.recorded";

    public async Task HandleAsync(TenantArgs args, TaskContext context, CancellationToken cancellationToken)
    {
        recorder.Started(args.Tenant);
        try
        {
            await Task.Delay(args.Ms, cancellationToken);
        }
        finally
        {
            recorder.Ended(args.Tenant);
        }
    }
}
