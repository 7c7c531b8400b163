using Conveyor.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conveyor.Tests.Engine;

/// <summary>A real host running the worker and scheduler on the in-memory backend (the reference state machine), with short intervals.</summary>
internal sealed class EngineHost : IAsyncDisposable
{
    private readonly IHost _host;
    private bool _stopped;

    /// <param name="tasks">Registers the tasks (and any service the test needs).</param>
    /// <param name="configure">Options over the short intervals set here.</param>
    /// <param name="backend">Wraps the in-memory backend, to observe or hold some of its calls; by default it is used as it is.</param>
    public EngineHost(Action<ConveyorBuilder> tasks, Action<ConveyorOptions>? configure = null,
        Func<InMemoryBackend, Backends.IConveyorBackend>? backend = null)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton<Probe>();
        builder.Services.AddSingleton<Recorder>();
        var conveyor = builder.Services.AddConveyor(o =>
        {
            o.Worker.HeartbeatInterval = TimeSpan.FromMilliseconds(100);
            o.Worker.FetchWait = TimeSpan.FromSeconds(1);
            o.Worker.ShutdownTimeout = TimeSpan.FromSeconds(20);
            o.Scheduler.PromotionInterval = TimeSpan.FromMilliseconds(50);
            configure?.Invoke(o);
        });
        tasks(conveyor);
        conveyor.UseInMemoryBackend();
        if (backend is not null)
        {
            conveyor.UseBackend(sp => backend(sp.GetRequiredService<InMemoryBackend>()));
        }
        _host = builder.Build();
    }

    public IServiceProvider Services => _host.Services;

    public ITaskClient Client => Services.GetRequiredService<ITaskClient>();

    public Probe Probe => Services.GetRequiredService<Probe>();

    public InMemoryBackend Backend => Services.GetRequiredService<InMemoryBackend>();

    public Task StartAsync() => _host.StartAsync();

    public async Task StopAsync()
    {
        _stopped = true;
        await _host.StopAsync();
    }

    /// <summary>Polls the task until <paramref name="condition"/> holds, failing after <paramref name="timeout"/> (default 20 s).</summary>
    public async Task<TaskRecord> WaitForAsync(Guid id, Func<TaskRecord, bool> condition, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(20));
        TaskRecord? record;
        while (true)
        {
            record = await Client.GetAsync(id);
            if (record is not null && condition(record))
            {
                return record;
            }
            if (DateTime.UtcNow > deadline)
            {
                break;
            }
            await Task.Delay(20);
        }
        Assert.Fail($"task {id} did not reach the expected condition in time; last seen: {record?.State}, attempts {record?.Attempts}");
        return record!;
    }

    /// <summary>Waits until the task is in <paramref name="state"/>; fails at once if it ends in another terminal state.</summary>
    public async Task<TaskRecord> WaitForStateAsync(Guid id, TaskState state)
    {
        var record = await WaitForAsync(id, r => r.State == state || r.State.IsTerminal());
        Assert.Equal(state, record.State);
        return record;
    }

    /// <summary>Polls the default queue's counts until <paramref name="condition"/> holds.</summary>
    public async Task WaitForQueueAsync(Func<QueueStats, bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (DateTime.UtcNow < deadline)
        {
            var stats = (await Backend.GetQueuesAsync(CancellationToken.None)).SingleOrDefault(q => q.Name == QueueNames.Default);
            if (stats is not null && condition(stats))
            {
                return;
            }
            await Task.Delay(20);
        }
        Assert.Fail($"the default queue never showed {what}");
    }

    /// <summary>Waits until the worker has finished <paramref name="count"/> heartbeats that began after
    /// <paramref name="after"/>; each heartbeat extends the leases and applies cancel requests before the next begins.</summary>
    public async Task WaitForHeartbeatsAsync(DateTimeOffset after, int count)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        var last = after;
        for (var seen = 0; seen < count;)
        {
            Assert.True(DateTime.UtcNow < deadline, $"saw only {seen} of {count} heartbeats");
            var worker = (await Backend.ListWorkersAsync(last, CancellationToken.None)).SingleOrDefault();
            if (worker is not null && worker.HeartbeatAt > last)
            {
                last = worker.HeartbeatAt;
                seen++;
                continue;
            }
            await Task.Delay(20);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_stopped)
        {
            Probe.Gate.TrySetResult();
            await _host.StopAsync();
        }
        _host.Dispose();
    }
}

/// <summary>What the test handlers saw, shared with the test.</summary>
internal sealed class Probe
{
    private int _runs;

    /// <summary>Attempts started.</summary>
    public int Runs => Volatile.Read(ref _runs);

    /// <summary>Set when the first attempt starts.</summary>
    public TaskCompletionSource Started { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Set when a handler saw its token cancelled.</summary>
    public TaskCompletionSource TokenCancelled { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Handlers of <see cref="GatedTask"/> wait for it.</summary>
    public TaskCompletionSource Gate { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Ran()
    {
        Interlocked.Increment(ref _runs);
        Started.TrySetResult();
    }
}

internal sealed class FailingTask(Probe probe) : ITaskHandler<NoArgs>
{
    public const string Name = "test.failing";

    public Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken)
    {
        probe.Ran();
        throw new InvalidOperationException($"attempt {context.Attempt} failed");
    }
}

internal sealed class PermanentlyFailingTask(Probe probe) : ITaskHandler<NoArgs>
{
    public const string Name = "test.permanent";

    public Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken)
    {
        probe.Ran();
        throw new PermanentTaskException("the input can never be processed");
    }
}

/// <summary>Runs until its token is cancelled.</summary>
internal sealed class HangingTask(Probe probe) : ITaskHandler<NoArgs>
{
    public const string Name = "test.hanging";

    public async Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken)
    {
        probe.Ran();
        try
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
        }
        catch (OperationCanceledException)
        {
            probe.TokenCancelled.TrySetResult();
            throw;
        }
    }
}

/// <summary>Runs until the probe's gate opens.</summary>
internal sealed class GatedTask(Probe probe) : ITaskHandler<NoArgs>
{
    public const string Name = "test.gated";

    public async Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken)
    {
        probe.Ran();
        await probe.Gate.Task.WaitAsync(cancellationToken);
    }
}

/// <summary>Runs until the probe's gate opens, whatever its token says (blocking I/O without a timeout).</summary>
internal sealed class StubbornTask(Probe probe) : ITaskHandler<NoArgs>
{
    public const string Name = "test.stubborn";

    public async Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken)
    {
        probe.Ran();
        await probe.Gate.Task;
    }
}

internal sealed class CountingTask(Probe probe) : ITaskHandler<NoArgs, string>
{
    public const string Name = "test.counting";

    public Task<string> HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken)
    {
        probe.Ran();
        return Task.FromResult($"ran attempt {context.Attempt}");
    }
}

/// <summary>Takes 20 ms.</summary>
internal sealed class SlowTask(Probe probe) : ITaskHandler<NoArgs>
{
    public const string Name = "test.slow";

    public async Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken)
    {
        probe.Ran();
        await Task.Delay(20, cancellationToken);
    }
}
