using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Conveyor.Tests.Engine;

/// <summary>The worker's soft time limit (<see cref="WorkerOptions.SoftTimeLimit"/>, <c>--soft-time-limit</c>) for a
/// handler that honours its token (issue 10, item 5; docs/operations.md, "Time limits"): at the limit its token is
/// cancelled and a warning logged, and the attempt fails with <see cref="TimeoutException"/>, retried by its policy.</summary>
public sealed class SoftTimeLimitEngineTests
{
    private static readonly TimeSpan SoftLimit = TimeSpan.FromMilliseconds(500);
    private static readonly RetryPolicy FastRetry = RetryPolicy.Fixed(TimeSpan.FromMilliseconds(10), jitter: 0);

    private static EngineHost SoftLimitedHost(CapturingLoggerProvider logs, int hangingAttempts) => new(c =>
        {
            c.Services.AddSingleton<ILoggerProvider>(logs);
            c.Services.AddSingleton(new SoftLimitProbe(hangingAttempts));
            c.AddTask<SoftLimitedTask>(SoftLimitedTask.Name);
        },
        o => o.Worker.SoftTimeLimit = SoftLimit);

    [Fact]
    public async Task The_soft_time_limit_cancels_the_handlers_token_and_its_attempt_fails_with_a_timeout_and_is_retried()
    {
        var logs = new CapturingLoggerProvider();
        // The first attempt waits on its token; the second returns at once.
        await using var host = SoftLimitedHost(logs, hangingAttempts: 1);
        var probe = host.Services.GetRequiredService<SoftLimitProbe>();
        await host.StartAsync();

        var result = await host.Client.EnqueueAsync(SoftLimitedTask.Name, options: new EnqueueOptions { MaxAttempts = 3, Retry = FastRetry });
        var record = await host.WaitForStateAsync(result.Id, TaskState.Succeeded);

        // The token was cancelled at the limit, not before it (the timer starts just before the handler), nor long after.
        var cancelledAfter = Assert.Single(probe.CancelledAfter);
        Assert.InRange(cancelledAfter, SoftLimit - TimeSpan.FromMilliseconds(50), SoftLimit + TimeSpan.FromSeconds(5));
        Assert.Contains(logs.Entries, e => e.Level == LogLevel.Warning
            && e.Message.Contains($"Task {result.Id} ({SoftLimitedTask.Name}, attempt 1) passed its soft time limit of {SoftLimit}", StringComparison.Ordinal));

        // The first attempt failed with the timeout, and the policy retried it: the second ran and succeeded.
        Assert.Equal([1, 2], probe.Attempts.Order());
        Assert.Equal(2, record.Attempts);
        var error = Assert.Single(record.Errors);
        Assert.Equal(1, error.Attempt);
        Assert.Equal(typeof(TimeoutException).FullName, error.Error.Type);
        Assert.Contains($"time limit of {SoftLimit}", error.Error.Message, StringComparison.Ordinal);
        Assert.Contains(TaskState.Retrying, record.Transitions.Select(t => t.State));
    }

    [Fact]
    public async Task An_attempt_ended_by_the_soft_time_limit_on_its_last_attempt_is_dead_with_a_timeout()
    {
        var logs = new CapturingLoggerProvider();
        await using var host = SoftLimitedHost(logs, hangingAttempts: int.MaxValue);
        var probe = host.Services.GetRequiredService<SoftLimitProbe>();
        await host.StartAsync();

        var result = await host.Client.EnqueueAsync(SoftLimitedTask.Name, options: new EnqueueOptions { MaxAttempts = 1, Retry = FastRetry });
        var record = await host.WaitForStateAsync(result.Id, TaskState.Dead);

        var cancelledAfter = Assert.Single(probe.CancelledAfter);
        Assert.InRange(cancelledAfter, SoftLimit - TimeSpan.FromMilliseconds(50), SoftLimit + TimeSpan.FromSeconds(5));
        Assert.Equal([1], probe.Attempts);
        Assert.Equal(1, record.Attempts);
        Assert.Equal(typeof(TimeoutException).FullName, record.Error?.Type);
        Assert.Equal(typeof(TimeoutException).FullName, Assert.Single(record.Errors).Error.Type);
        Assert.DoesNotContain(TaskState.Retrying, record.Transitions.Select(t => t.State));
    }
}

/// <summary>What <see cref="SoftLimitedTask"/> saw: the attempts that ran, and how long after its start each cancelled
/// token fired.</summary>
internal sealed class SoftLimitProbe(int hangingAttempts)
{
    /// <summary>Attempts up to this one wait on their token; later ones return at once.</summary>
    public int HangingAttempts => hangingAttempts;

    public ConcurrentQueue<int> Attempts { get; } = new();

    public ConcurrentQueue<TimeSpan> CancelledAfter { get; } = new();
}

/// <summary>Waits on its token (a handler that honours it), up to the probe's <see cref="SoftLimitProbe.HangingAttempts"/>.</summary>
internal sealed class SoftLimitedTask(SoftLimitProbe probe) : ITaskHandler<NoArgs>
{
    public const string Name = "test.soft-limited";

    public async Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        probe.Attempts.Enqueue(context.Attempt);
        if (context.Attempt > probe.HangingAttempts)
        {
            return;
        }
        try
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            probe.CancelledAfter.Enqueue(Stopwatch.GetElapsedTime(started));
            throw;
        }
    }
}
