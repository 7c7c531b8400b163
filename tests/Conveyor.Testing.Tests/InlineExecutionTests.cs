using Conveyor.Backends;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Conveyor.Testing.Tests;

public sealed class InlineExecutionTests
{
    private static ConveyorTestHarness Inline(Action<InlineExecutionOptions>? options = null, TimeProvider? time = null) =>
        ConveyorTestHarness.Create(
            c => c.AddTask<ScoreFlight>(ScoreFlight.Name).AddTask<BrokenTask>(BrokenTask.Name).AddTask<FlakyTask>(FlakyTask.Name)
                .AddTask<ImportFlights>(ImportFlights.Name).AddTask<WaitingTask>(WaitingTask.Name).UseInMemoryBackend().UseInlineExecution(options),
            s => s.AddSingleton<Journal>().AddScoped<AttemptScope>(),
            time);

    private static Journal JournalOf(ConveyorTestHarness harness) => harness.Services.GetRequiredService<Journal>();

    [Fact]
    public async Task Enqueue_runs_the_handler_before_it_returns_and_stores_the_outcome()
    {
        await using var harness = Inline();

        var result = await harness.Client.EnqueueAsync(ScoreFlight.Name, new FlightArgs(42));

        Assert.Equal(TaskState.Succeeded, result.State);
        Assert.Single(JournalOf(harness).Entries, e => e.StartsWith("score 42 attempt 1", StringComparison.Ordinal));
        var record = await harness.Client.GetAsync(result.Id);
        Assert.NotNull(record);
        Assert.Equal("0.97", record.Result);
        Assert.Equal(InlineTaskRunner.WorkerId, record.WorkerId);
        Assert.Equal([TaskState.Queued, TaskState.Running, TaskState.Succeeded], record.Transitions.Select(t => t.State));
    }

    [Fact]
    public async Task Each_attempt_runs_in_a_DI_scope_of_its_own()
    {
        await using var harness = Inline();

        await harness.Client.EnqueueManyAsync([TaskRequest.Create(ScoreFlight.Name, new FlightArgs(1)), TaskRequest.Create(ScoreFlight.Name, new FlightArgs(2))]);

        var scopes = JournalOf(harness).Entries.Select(e => e[(e.IndexOf("scope ", StringComparison.Ordinal) + 6)..]).ToList();
        Assert.Equal(2, scopes.Count);
        Assert.NotEqual(scopes[0], scopes[1]);
    }

    [Fact]
    public async Task A_failed_attempt_is_retried_at_once_and_the_task_succeeds()
    {
        await using var harness = Inline();

        var result = await harness.Client.EnqueueAsync(FlakyTask.Name, new EnqueueOptions { MaxAttempts = 3 });

        Assert.Equal(TaskState.Succeeded, result.State);
        Assert.Equal(["flaky attempt 1", "flaky attempt 2"], JournalOf(harness).Entries);
        var record = await harness.Client.GetAsync(result.Id);
        Assert.Equal(2, record!.Attempts);
        Assert.Equal(typeof(TimeoutException).FullName, Assert.Single(record.Errors).Error.Type);
        Assert.Equal(
            [TaskState.Queued, TaskState.Running, TaskState.Retrying, TaskState.Queued, TaskState.Running, TaskState.Succeeded],
            record.Transitions.Select(t => t.State));
    }

    [Fact]
    public async Task Snoozes_run_again_at_once_inline_and_spend_no_attempt()
    {
        await using var harness = Inline();

        var result = await harness.Client.EnqueueAsync(WaitingTask.Name, new EnqueueOptions { MaxAttempts = 1 });

        Assert.Equal(TaskState.Succeeded, result.State);
        Assert.Equal(["waiting attempt 1", "waiting attempt 1", "waiting attempt 1"], JournalOf(harness).Entries);
        var record = await harness.Client.GetAsync(result.Id);
        Assert.Equal(1, record!.Attempts);
        Assert.Equal(["Conveyor.Snoozed", "Conveyor.Snoozed"], record.Errors.Select(e => e.Error.Type));
    }

    [Fact]
    public async Task Without_skipped_delays_a_snooze_waits_for_its_time()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var harness = Inline(o => o.SkipRetryDelays = false, time);

        var result = await harness.Client.EnqueueAsync(WaitingTask.Name);
        Assert.Equal(TaskState.Retrying, result.State);
        Assert.Equal(0, await harness.RunPendingAsync());

        time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(1, await harness.RunPendingAsync());
        time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(1, await harness.RunPendingAsync());

        Assert.Equal(TaskState.Succeeded, (await harness.Client.GetAsync(result.Id))!.State);
    }

    [Fact]
    public async Task A_task_that_ends_dead_fails_the_enqueue_with_the_handlers_exception()
    {
        await using var harness = Inline();

        var error = await Assert.ThrowsAsync<TaskExecutionException>(() => harness.Client.EnqueueAsync(BrokenTask.Name, new EnqueueOptions { MaxAttempts = 3 }));

        Assert.IsType<InvalidOperationException>(error.InnerException);
        Assert.Equal("attempt 3 failed", error.InnerException.Message);
        Assert.Contains("test.broken", error.Message, StringComparison.Ordinal);
        Assert.Equal(TaskState.Dead, error.Task?.State);
        Assert.Equal(["broken attempt 1", "broken attempt 2", "broken attempt 3"], JournalOf(harness).Entries);
        var stored = harness.RequireEnqueued(BrokenTask.Name);
        Assert.Equal([1, 2, 3], stored.Errors.Select(e => e.Attempt));
    }

    [Fact]
    public async Task Without_rethrow_a_dead_task_is_reported_by_its_state()
    {
        await using var harness = Inline(o => o.RethrowFailures = false);

        var result = await harness.Client.EnqueueAsync(BrokenTask.Name, new EnqueueOptions { MaxAttempts = 2 });

        Assert.Equal(TaskState.Dead, result.State);
        Assert.Equal(2, (await harness.Client.GetAsync(result.Id))!.Attempts);
    }

    [Fact]
    public async Task Tasks_enqueued_by_a_task_run_inline_within_it()
    {
        await using var harness = Inline();

        await harness.Client.EnqueueAsync(ImportFlights.Name, new[] { 1, 2 });

        Assert.Equal(["import", "score 1", "score 2", "import done"], JournalOf(harness).Entries.Select(e => e.Split(" attempt")[0]));
        Assert.All(harness.AssertEnqueued(ScoreFlight.Name), t => Assert.Equal(TaskState.Succeeded, t.State));
    }

    [Fact]
    public async Task A_delayed_task_waits_until_its_time_and_a_run_of_pending_tasks()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var harness = Inline(time: time);

        var result = await harness.Client.EnqueueAsync(ScoreFlight.Name, new FlightArgs(7), new EnqueueOptions { Delay = TimeSpan.FromMinutes(5) });
        Assert.Equal(TaskState.Scheduled, result.State);
        Assert.Equal(0, await harness.RunPendingAsync());

        time.Advance(TimeSpan.FromMinutes(5));

        Assert.Equal(1, await harness.RunPendingAsync());
        Assert.Equal(TaskState.Succeeded, (await harness.Client.GetAsync(result.Id))!.State);
    }

    [Fact]
    public async Task A_task_with_no_handler_here_stays_queued()
    {
        await using var harness = Inline();

        var result = await harness.Client.EnqueueAsync("billing.invoice", new { orderId = 5 });

        Assert.Equal(TaskState.Queued, result.State);
        Assert.Equal(0, await harness.RunPendingAsync());
        harness.RequireEnqueued("billing.invoice", new { orderId = 5 });
    }

    [Fact]
    public async Task A_task_returned_for_an_existing_idempotency_key_is_not_run_again()
    {
        await using var harness = Inline();
        var options = new EnqueueOptions { IdempotencyKey = "flight-9" };

        var first = await harness.Client.EnqueueAsync(ScoreFlight.Name, new FlightArgs(9), options);
        var second = await harness.Client.EnqueueAsync(ScoreFlight.Name, new FlightArgs(9), options);

        Assert.Equal(first.Id, second.Id);
        Assert.False(second.Created);
        Assert.Single(JournalOf(harness).Entries);
    }

    [Fact]
    public async Task A_manual_retry_runs_the_task_again()
    {
        await using var harness = Inline(o => o.RethrowFailures = false);
        var result = await harness.Client.EnqueueAsync(BrokenTask.Name, new EnqueueOptions { MaxAttempts = 1 });

        Assert.Equal(RetryOutcome.Requeued, await harness.Client.RetryAsync(result.Id));

        Assert.Equal(["broken attempt 1", "broken attempt 1"], JournalOf(harness).Entries);
    }

    [Fact]
    public void Inline_execution_turns_the_worker_of_the_process_off()
    {
        var services = new ServiceCollection();
        services.AddConveyor().UseInMemoryBackend().UseInlineExecution().UseInlineExecution();
        using var provider = services.BuildServiceProvider();

        Assert.False(provider.GetRequiredService<IOptions<ConveyorOptions>>().Value.RunWorker);
        Assert.Equal("InlineTaskClient", provider.GetRequiredService<ITaskClient>().GetType().Name);
    }

    [Fact]
    public void Inline_execution_on_another_backend_fails_with_a_message_naming_the_fix()
    {
        var services = new ServiceCollection();
        services.AddConveyor().UseInlineExecution().UseBackend(_ => new OtherBackend());
        using var provider = services.BuildServiceProvider();

        var error = Assert.Throws<InvalidOperationException>(() => provider.GetRequiredService<ITaskClient>());

        Assert.Contains("UseInMemoryBackend()", error.Message, StringComparison.Ordinal);
    }

    /// <summary>Any backend that is not the in-memory one.</summary>
    private sealed class OtherBackend : IConveyorBackend
    {
        private readonly InMemoryBackend _inner = new();

        public string Name => "other";
        public IQueueBackend Queue => _inner;
        public ITaskStore Store => _inner;
        public ICoordinationBackend Coordination => _inner;
        public IScheduleStore Schedules => _inner;
        public IUniqueKeyStore UniqueKeys => _inner;
        public INotifier Notifier => _inner.Notifier;
        public ILimitStore Limits => _inner.Limits;
        public BackendCapabilities Capabilities => _inner.Capabilities;
        public Task MigrateAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public Task<BackendHealth> CheckHealthAsync(CancellationToken cancellationToken) => _inner.CheckHealthAsync(cancellationToken);
    }
}

public sealed class InlinePipelineTests
{
    internal sealed class TagMiddleware(Journal journal) : ITaskMiddleware
    {
        public async ValueTask InvokeAsync(TaskExecutionContext context, TaskExecutionDelegate next)
        {
            journal.Add($"middleware before {context.Message.Task} on {context.WorkerId}");
            await next(context);
            journal.Add($"middleware after {context.Result}");
        }
    }

    [Fact]
    public async Task Inline_attempts_go_through_the_task_middleware_and_raise_the_workers_events()
    {
        var events = new List<TaskEvent>();
        await using var harness = ConveyorTestHarness.Create(
            c => c.AddTask<ScoreFlight>(ScoreFlight.Name).AddTask<FlakyTask>(FlakyTask.Name).UseInMemoryBackend().UseInlineExecution()
                .UseTaskMiddleware<TagMiddleware>().OnTaskEvent(e => { lock (events) { events.Add(e); } }),
            s => s.AddSingleton<Journal>().AddScoped<AttemptScope>());

        var score = await harness.Client.EnqueueAsync(ScoreFlight.Name, new FlightArgs(7));
        var flaky = await harness.Client.EnqueueAsync(FlakyTask.Name, new EnqueueOptions { MaxAttempts = 3 });

        var journal = harness.Services.GetRequiredService<Journal>().Entries;
        Assert.Contains($"middleware before {ScoreFlight.Name} on {InlineTaskRunner.WorkerId}", journal);
        Assert.Contains("middleware after 0.97", journal);
        Assert.Equal([TaskEventKind.Enqueued, TaskEventKind.Started, TaskEventKind.Succeeded],
            events.Where(e => e.TaskId == score.Id).Select(e => e.Kind));
        Assert.Equal([TaskEventKind.Enqueued, TaskEventKind.Started, TaskEventKind.Retrying, TaskEventKind.Started, TaskEventKind.Succeeded],
            events.Where(e => e.TaskId == flaky.Id).Select(e => e.Kind));
        Assert.All(events.Where(e => e.Kind != TaskEventKind.Enqueued), e => Assert.Equal(InlineTaskRunner.WorkerId, e.WorkerId));
    }
}
