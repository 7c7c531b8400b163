using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Tests.Engine;

/// <summary>Retry policies through a real worker on the in-memory backend: exception lists, per-type and per-enqueue
/// policies, a retry the handler asks for at a time, and snoozes that spend no attempt.</summary>
public sealed class RetryEngineTests
{
    private static readonly RetryPolicy FastRetry = RetryPolicy.Fixed(TimeSpan.FromMilliseconds(10), jitter: 0);

    [Fact]
    public async Task An_exception_outside_RetryOn_makes_the_task_dead_at_once_with_its_error()
    {
        await using var host = new EngineHost(c => c.AddTask<ThrowingTask>(ThrowingTask.Name));
        await host.StartAsync();

        var result = await host.Client.EnqueueAsync(ThrowingTask.Name, new ThrowArgs("System.FormatException"),
            new EnqueueOptions { MaxAttempts = 5, Retry = FastRetry.WithRetryOn<HttpRequestException>() });
        var record = await host.WaitForStateAsync(result.Id, TaskState.Dead);

        Assert.Equal(1, record.Attempts);
        Assert.Equal(1, host.Probe.Runs);
        Assert.Equal(typeof(FormatException).FullName, record.Error?.Type);
        Assert.DoesNotContain(TaskState.Retrying, record.Transitions.Select(t => t.State));
    }

    [Fact]
    public async Task An_exception_in_RetryOn_or_derived_from_one_is_retried_until_MaxAttempts()
    {
        await using var host = new EngineHost(c => c.AddTask<ThrowingTask>(ThrowingTask.Name));
        await host.StartAsync();

        // ThrowingTask throws a ScoringUnavailableException, an HttpRequestException, for this name.
        var result = await host.Client.EnqueueAsync(ThrowingTask.Name, new ThrowArgs("ScoringUnavailable"),
            new EnqueueOptions { MaxAttempts = 3, Retry = FastRetry with { RetryOn = ["HttpRequestException"] } });
        var record = await host.WaitForStateAsync(result.Id, TaskState.Dead);

        Assert.Equal(3, record.Attempts);
        Assert.Equal(3, host.Probe.Runs);
        Assert.All(record.Errors, e => Assert.Equal(typeof(ScoringUnavailableException).FullName, e.Error.Type));
    }

    [Fact]
    public async Task NeverRetryOn_of_the_task_type_applies_unless_the_enqueue_gives_its_own_policy()
    {
        await using var host = new EngineHost(c => c.AddTask<ThrowingTask>(ThrowingTask.Name, t =>
        {
            t.MaxAttempts = 3;
            t.Retry = FastRetry.WithNeverRetryOn<FormatException>();
        }));
        await host.StartAsync();

        var byType = await host.Client.EnqueueAsync(ThrowingTask.Name, new ThrowArgs("System.FormatException"));
        var byEnqueue = await host.Client.EnqueueAsync(ThrowingTask.Name, new ThrowArgs("System.FormatException"),
            new EnqueueOptions { Retry = FastRetry });

        var typeRecord = await host.WaitForStateAsync(byType.Id, TaskState.Dead);
        var enqueueRecord = await host.WaitForStateAsync(byEnqueue.Id, TaskState.Dead);
        Assert.Equal(1, typeRecord.Attempts);
        Assert.Equal(FastRetry.WithNeverRetryOn<FormatException>(), typeRecord.Retry);
        // The enqueue's policy replaces the type's, lists included: retried until the type's MaxAttempts.
        Assert.Equal(3, enqueueRecord.Attempts);
        Assert.Equal(FastRetry, enqueueRecord.Retry);
    }

    [Fact]
    public async Task A_time_limit_counts_as_a_TimeoutException_for_the_lists()
    {
        await using var host = new EngineHost(c => c.AddTask<HangingTask>(HangingTask.Name));
        await host.StartAsync();

        var result = await host.Client.EnqueueAsync(HangingTask.Name, new EnqueueOptions
        {
            Timeout = TimeSpan.FromMilliseconds(100),
            MaxAttempts = 5,
            Retry = FastRetry.WithRetryOn<HttpRequestException>(),
        });
        var record = await host.WaitForStateAsync(result.Id, TaskState.Dead);

        Assert.Equal(1, record.Attempts);
        Assert.Equal(typeof(TimeoutException).FullName, record.Error?.Type);
    }

    [Fact]
    public async Task A_retry_asked_at_a_time_spends_the_attempt_and_waits_for_that_time()
    {
        await using var host = new EngineHost(c => c.AddTask<RetryLaterTask>(RetryLaterTask.Name));
        await host.StartAsync();
        var at = DateTimeOffset.UtcNow.AddHours(1);

        // Exceptions outside RetryOn would be dead at once: a retry asked for is not bound by the lists.
        var result = await host.Client.EnqueueAsync(RetryLaterTask.Name, new RetryLaterArgs(at),
            new EnqueueOptions { MaxAttempts = 5, Retry = FastRetry with { RetryOn = ["TimeoutException"] } });
        var record = await host.WaitForStateAsync(result.Id, TaskState.Retrying);

        Assert.Equal(1, record.Attempts);
        Assert.Equal(at, record.NotBefore);
        var error = Assert.Single(record.Errors);
        Assert.Equal(typeof(HttpRequestException).FullName, error.Error.Type);
        Assert.Equal("429 Too Many Requests", error.Error.Message);
    }

    [Fact]
    public async Task A_retry_asked_after_a_delay_runs_again_and_counts_the_attempt()
    {
        await using var host = new EngineHost(c => c.AddTask<RetryLaterTask>(RetryLaterTask.Name));
        await host.StartAsync();

        var result = await host.Client.EnqueueAsync(RetryLaterTask.Name, new RetryLaterArgs(null), new EnqueueOptions { MaxAttempts = 3 });
        var record = await host.WaitForStateAsync(result.Id, TaskState.Succeeded);

        Assert.Equal(2, record.Attempts);
        Assert.Equal(2, host.Probe.Runs);
        Assert.Equal([1], record.Errors.Select(e => e.Attempt));
    }

    [Fact]
    public async Task Snoozes_spend_no_attempt_and_leave_a_line_each_in_the_history()
    {
        await using var host = new EngineHost(c => c.AddTask<SnoozingTask>(SnoozingTask.Name));
        await host.StartAsync();

        // One attempt in all: had a snooze spent it, the task would be dead.
        var result = await host.Client.EnqueueAsync(SnoozingTask.Name, new SnoozeArgs(Times: 3), new EnqueueOptions { MaxAttempts = 1 });
        var record = await host.WaitForStateAsync(result.Id, TaskState.Succeeded);

        Assert.Equal(1, record.Attempts);
        Assert.Equal(4, host.Probe.Runs);
        Assert.Equal(3, record.Errors.Count);
        Assert.All(record.Errors, e => Assert.Equal("Conveyor.Snoozed", e.Error.Type));
        Assert.Contains("snooze 3 in a row, at most 100", record.Errors[2].Error.Message, StringComparison.Ordinal);
        Assert.Equal(3, record.Transitions.Count(t => t.State == TaskState.Retrying));
        Assert.Equal(0, host.Services.GetRequiredService<WorkerStatus>().Failed);
    }

    [Fact]
    public async Task A_task_that_snoozes_past_its_limit_goes_dead()
    {
        await using var host = new EngineHost(c => c.AddTask<SnoozingTask>(SnoozingTask.Name, t => t.MaxSnoozes = 2));
        await host.StartAsync();

        var result = await host.Client.EnqueueAsync(SnoozingTask.Name, new SnoozeArgs(Times: int.MaxValue), new EnqueueOptions { MaxAttempts = 1 });
        var record = await host.WaitForStateAsync(result.Id, TaskState.Dead);

        Assert.Equal(3, host.Probe.Runs);
        Assert.Equal(["Conveyor.Snoozed", "Conveyor.Snoozed", "Conveyor.SnoozeLimit"], record.Errors.Select(e => e.Error.Type));
        Assert.Contains("more than 2 times in a row", record.Error?.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_workers_snooze_limit_applies_to_tasks_that_set_none()
    {
        await using var host = new EngineHost(c => c.AddTask<SnoozingTask>(SnoozingTask.Name), o => o.Worker.MaxSnoozes = 1);
        await host.StartAsync();

        var result = await host.Client.EnqueueAsync(SnoozingTask.Name, new SnoozeArgs(Times: int.MaxValue));
        var record = await host.WaitForStateAsync(result.Id, TaskState.Dead);

        Assert.Equal(2, host.Probe.Runs);
        Assert.Equal("Conveyor.SnoozeLimit", record.Error?.Type);
    }

    [Fact]
    public async Task The_handlers_TaskRetry_attribute_is_the_tasks_policy()
    {
        await using var host = new EngineHost(c => c.AddTask<AttributedTask>(AttributedTask.Name));
        await host.StartAsync();

        var result = await host.Client.EnqueueAsync(AttributedTask.Name);
        var record = await host.WaitForStateAsync(result.Id, TaskState.Dead);

        // MaxAttempts 2 from the attribute; InvalidOperationException is in its RetryOn list.
        Assert.Equal(2, record.Attempts);
        Assert.Equal(RetryBackoff.Fixed, record.Retry.Backoff);
        Assert.Equal(TimeSpan.FromMilliseconds(10), record.Retry.BaseDelay);
        Assert.Equal(["System.InvalidOperationException"], record.Retry.RetryOn);
    }

    [Fact]
    public async Task Bulk_retry_runs_dead_tasks_again_and_bulk_purge_deletes_them()
    {
        await using var host = new EngineHost(c => c.AddTask<FailingTask>(FailingTask.Name).AddTask<CountingTask>(CountingTask.Name));
        await host.StartAsync();
        var failing = new List<Guid>();
        for (var i = 0; i < 3; i++)
        {
            failing.Add((await host.Client.EnqueueAsync(FailingTask.Name, new EnqueueOptions { MaxAttempts = 1 })).Id);
        }
        var counting = await host.Client.EnqueueAsync(CountingTask.Name);
        foreach (var id in failing)
        {
            await host.WaitForStateAsync(id, TaskState.Dead);
        }
        await host.WaitForStateAsync(counting.Id, TaskState.Succeeded);
        var events = new List<TaskEvent>();
        using var subscription = host.Services.GetRequiredService<TaskEventBus>().Subscribe(e =>
        {
            lock (events)
            {
                events.Add(e);
            }
        });

        Assert.Equal(3, await host.Client.RetryManyAsync(new TaskFilter { Task = FailingTask.Name }));

        foreach (var id in failing)
        {
            // Ran once more, with a fresh set of one attempt.
            var record = await host.WaitForAsync(id, r => r.State == TaskState.Dead && r.Errors.Count == 2);
            Assert.Equal(1, record.Attempts);
        }
        Assert.Equal(1 + 3 + 3, host.Probe.Runs);
        lock (events)
        {
            Assert.Equal(failing.Order(), events.Where(e => e.Kind == TaskEventKind.Enqueued).Select(e => e.TaskId).Order());
        }
        var refused = await Assert.ThrowsAsync<TaskValidationException>(() => host.Client.PurgeAsync(new TaskFilter { State = TaskState.Running }));
        Assert.Equal("state", Assert.Single(refused.Errors).Field);
        Assert.Equal(3, await host.Client.PurgeAsync(new TaskFilter()));
        Assert.Equal(1, await host.Client.PurgeAsync(new TaskFilter { State = TaskState.Succeeded }));
        foreach (var id in failing)
        {
            Assert.Null(await host.Client.GetAsync(id));
        }
    }
}

internal sealed class ScoringUnavailableException(string message) : HttpRequestException(message);

internal sealed record ThrowArgs(string Exception);

/// <summary>Throws the exception its arguments name.</summary>
internal sealed class ThrowingTask(Probe probe) : ITaskHandler<ThrowArgs>
{
    public const string Name = "test.throwing";

    public Task HandleAsync(ThrowArgs args, TaskContext context, CancellationToken cancellationToken)
    {
        probe.Ran();
        throw args.Exception switch
        {
            "ScoringUnavailable" => new ScoringUnavailableException("scoring is down"),
            _ => (Exception)Activator.CreateInstance(Type.GetType(args.Exception, throwOnError: true)!, $"attempt {context.Attempt} failed")!,
        };
    }
}

internal sealed record RetryLaterArgs(DateTimeOffset? At);

/// <summary>Asks for a retry at its time (or in 20 ms) on its first attempt; succeeds on the next.</summary>
internal sealed class RetryLaterTask(Probe probe) : ITaskHandler<RetryLaterArgs>
{
    public const string Name = "test.retry-later";

    public Task HandleAsync(RetryLaterArgs args, TaskContext context, CancellationToken cancellationToken)
    {
        probe.Ran();
        if (context.Attempt > 1)
        {
            return Task.CompletedTask;
        }
        var cause = new HttpRequestException("429 Too Many Requests");
        throw args.At is { } at ? new RetryTaskException(at, cause) : new RetryTaskException(TimeSpan.FromMilliseconds(20), cause);
    }
}

internal sealed record SnoozeArgs(int Times);

/// <summary>Snoozes for 10 ms on its first runs, as many as its arguments say; then succeeds.</summary>
internal sealed class SnoozingTask(Probe probe) : ITaskHandler<SnoozeArgs>
{
    public const string Name = "test.snoozing";

    public Task HandleAsync(SnoozeArgs args, TaskContext context, CancellationToken cancellationToken)
    {
        probe.Ran();
        if (probe.Runs <= args.Times)
        {
            throw new SnoozeTaskException(TimeSpan.FromMilliseconds(10));
        }
        return Task.CompletedTask;
    }
}

[TaskRetry(Backoff = RetryBackoff.Fixed, DelaySeconds = 0.01, MaxAttempts = 2, RetryOn = [typeof(InvalidOperationException)])]
internal sealed class AttributedTask(Probe probe) : ITaskHandler<NoArgs>
{
    public const string Name = "test.attributed";

    public Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken)
    {
        probe.Ran();
        throw new InvalidOperationException($"attempt {context.Attempt} failed");
    }
}
