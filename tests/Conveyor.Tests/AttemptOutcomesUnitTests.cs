using Conveyor.Backends;

namespace Conveyor.Tests;

public sealed class AttemptOutcomesUnitTests
{
    private static readonly DateTimeOffset Now = new(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);

    private static Lease LeaseOf(int attempt, int maxAttempts = 5, RetryPolicy? retry = null) => new(
        new TaskMessage
        {
            Id = Guid.CreateVersion7(),
            Task = "flights.score",
            CreatedAt = Now,
            MaxAttempts = maxAttempts,
            Retry = retry ?? RetryPolicy.Fixed(TimeSpan.FromSeconds(30), jitter: 0),
        },
        Token: 7, attempt, IsRedelivery: false, Now.AddSeconds(30));

    [Fact]
    public void A_failure_with_attempts_left_retries_after_the_backoff()
    {
        var completion = AttemptOutcomes.Failed(LeaseOf(2), new InvalidOperationException("boom"), Now);

        Assert.Equal(CompletionKind.Retry, completion.Kind);
        Assert.Equal(Now.AddSeconds(30), completion.RetryAt);
        Assert.Equal(typeof(InvalidOperationException).FullName, completion.Error?.Type);
        Assert.False(completion.Unstarted);
    }

    [Fact]
    public void A_failure_on_the_last_attempt_is_dead()
    {
        var completion = AttemptOutcomes.Failed(LeaseOf(5, maxAttempts: 5), new InvalidOperationException("boom"), Now);

        Assert.Equal(CompletionKind.Dead, completion.Kind);
        Assert.Equal("boom", completion.Error?.Message);
    }

    [Fact]
    public void An_exception_outside_RetryOn_is_dead_at_once_with_its_error()
    {
        var lease = LeaseOf(1, retry: RetryPolicy.Default.WithRetryOn<HttpRequestException>());

        var retried = AttemptOutcomes.Failed(lease, new HttpRequestException("503"), Now);
        var dead = AttemptOutcomes.Failed(lease, new FormatException("bad input"), Now);

        Assert.Equal(CompletionKind.Retry, retried.Kind);
        Assert.Equal(CompletionKind.Dead, dead.Kind);
        Assert.Equal(typeof(FormatException).FullName, dead.Error?.Type);
        Assert.Equal("bad input", dead.Error?.Message);
    }

    [Fact]
    public void An_exception_in_NeverRetryOn_is_dead_at_once()
    {
        var lease = LeaseOf(1, retry: RetryPolicy.Default.WithNeverRetryOn<ArgumentException>());

        Assert.Equal(CompletionKind.Dead, AttemptOutcomes.Failed(lease, new ArgumentNullException("flight"), Now).Kind);
        Assert.Equal(CompletionKind.Retry, AttemptOutcomes.Failed(lease, new TimeoutException(), Now).Kind);
    }

    [Fact]
    public void A_permanent_failure_is_dead_whatever_the_lists_say()
    {
        var lease = LeaseOf(1, retry: RetryPolicy.Default with { RetryOn = ["Exception"] });

        Assert.Equal(CompletionKind.Dead, AttemptOutcomes.Failed(lease, new PermanentTaskException("never"), Now).Kind);
    }

    [Fact]
    public void A_retry_asked_at_a_time_retries_then_whatever_the_lists_and_backoff_say()
    {
        var lease = LeaseOf(1, retry: RetryPolicy.Default with { RetryOn = ["TimeoutException"] });
        var cause = new HttpRequestException("429");

        var completion = AttemptOutcomes.Failed(lease, new RetryTaskException(Now.AddMinutes(7), cause), Now);

        Assert.Equal(CompletionKind.Retry, completion.Kind);
        Assert.Equal(Now.AddMinutes(7), completion.RetryAt);
        // The cause is the attempt's error; the attempt is spent.
        Assert.Equal(typeof(HttpRequestException).FullName, completion.Error?.Type);
        Assert.Equal("429", completion.Error?.Message);
        Assert.False(completion.Unstarted);
    }

    [Fact]
    public void A_retry_asked_after_a_delay_or_in_the_past()
    {
        Assert.Equal(Now.AddSeconds(90), AttemptOutcomes.Failed(LeaseOf(1), new RetryTaskException(TimeSpan.FromSeconds(90)), Now).RetryAt);
        Assert.Equal(Now, AttemptOutcomes.Failed(LeaseOf(1), new RetryTaskException(Now.AddHours(-1)), Now).RetryAt);
        var byBackoff = AttemptOutcomes.Failed(LeaseOf(1), new RetryTaskException(), Now);
        Assert.Equal(Now.AddSeconds(30), byBackoff.RetryAt);
        Assert.Equal(typeof(RetryTaskException).FullName, byBackoff.Error?.Type);
    }

    [Fact]
    public void A_retry_asked_on_the_last_attempt_is_dead()
    {
        var completion = AttemptOutcomes.Failed(LeaseOf(3, maxAttempts: 3), new RetryTaskException(TimeSpan.FromSeconds(1)), Now);

        Assert.Equal(CompletionKind.Dead, completion.Kind);
    }

    [Fact]
    public void A_time_limit_counts_as_a_TimeoutException_for_the_lists_and_a_shutdown_is_not_the_handlers_failure()
    {
        var lease = LeaseOf(1, retry: RetryPolicy.Default.WithRetryOn<HttpRequestException>());
        var error = new TaskError("System.TimeoutException", "limit");

        Assert.Equal(CompletionKind.Dead, AttemptOutcomes.ByPolicy(lease, error, typeof(TimeoutException), Now).Kind);
        var shutdown = AttemptOutcomes.ByPolicy(lease, new TaskError("Conveyor.WorkerShutdown", "stop"), null, Now, retryNow: true);
        Assert.Equal(CompletionKind.Retry, shutdown.Kind);
        Assert.Equal(Now, shutdown.RetryAt);
    }

    [Fact]
    public void A_snooze_is_an_unstarted_retry_after_its_delay_with_a_note()
    {
        var completion = AttemptOutcomes.Snoozed(LeaseOf(5, maxAttempts: 5), TimeSpan.FromMinutes(2), snoozedBefore: 3, maxSnoozes: 100, "flights.score", Now);

        // Even on the last attempt: a snooze spends none.
        Assert.Equal(CompletionKind.Retry, completion.Kind);
        Assert.True(completion.Unstarted);
        Assert.Equal(Now.AddMinutes(2), completion.RetryAt);
        Assert.Equal(AttemptOutcomes.SnoozedErrorType, completion.Error?.Type);
        Assert.Contains("snooze 4 in a row, at most 100", completion.Error?.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_snooze_past_the_limit_is_dead_naming_the_limit()
    {
        var completion = AttemptOutcomes.Snoozed(LeaseOf(1), TimeSpan.FromMinutes(2), snoozedBefore: 3, maxSnoozes: 3, "flights.score", Now);

        Assert.Equal(CompletionKind.Dead, completion.Kind);
        Assert.Equal(AttemptOutcomes.SnoozeLimitErrorType, completion.Error?.Type);
        Assert.Contains("more than 3 times in a row", completion.Error?.Message, StringComparison.Ordinal);
        Assert.Contains("MaxSnoozes", completion.Error?.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Snoozes_in_a_row_are_counted_back_to_the_last_other_error()
    {
        static AttemptError E(string type) => new(1, Now, new TaskError(type, "m"));
        var record = new TaskRecord
        {
            Id = Guid.CreateVersion7(),
            Task = "t",
            Queue = "default",
            State = TaskState.Running,
            Errors = [E(AttemptOutcomes.SnoozedErrorType), E("System.IO.IOException"), E(AttemptOutcomes.SnoozedErrorType), E(AttemptOutcomes.SnoozedErrorType)],
        };

        Assert.Equal(2, AttemptOutcomes.TrailingSnoozes(record));
        Assert.Equal(0, AttemptOutcomes.TrailingSnoozes(record with { Errors = [] }));
        Assert.Equal(0, AttemptOutcomes.TrailingSnoozes(record with { Errors = [E(AttemptOutcomes.SnoozeLimitErrorType)] }));
        Assert.Equal(0, AttemptOutcomes.TrailingSnoozes(null));
    }

    [Fact]
    public void Control_exceptions_refuse_negative_delays()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new RetryTaskException(TimeSpan.FromSeconds(-1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SnoozeTaskException(TimeSpan.FromSeconds(-1)));
        Assert.Equal(TimeSpan.Zero, new SnoozeTaskException().Delay);
    }
}

public sealed class TaskFilterUnitTests
{
    [Fact]
    public void The_default_filter_is_every_dead_task_and_is_not_narrowed()
    {
        var filter = new TaskFilter();

        Assert.Equal(TaskState.Dead, filter.State);
        Assert.False(filter.IsNarrowed);
        Assert.Empty(filter.Validate(purge: false));
        Assert.True(new TaskFilter { Queue = "mail" }.IsNarrowed);
        Assert.True(new TaskFilter { FinishedBefore = DateTimeOffset.UnixEpoch }.IsNarrowed);
    }

    [Theory]
    [InlineData(TaskState.Dead, true, true)]
    [InlineData(TaskState.Cancelled, true, true)]
    [InlineData(TaskState.Expired, true, true)]
    [InlineData(TaskState.Succeeded, false, true)]
    [InlineData(TaskState.Queued, false, false)]
    [InlineData(TaskState.Running, false, false)]
    [InlineData(TaskState.Retrying, false, false)]
    public void States_that_can_be_retried_and_purged(TaskState state, bool retry, bool purge)
    {
        var filter = new TaskFilter { State = state };

        Assert.Equal(retry, filter.Validate(purge: false).Count == 0);
        Assert.Equal(purge, filter.Validate(purge: true).Count == 0);
    }

    [Fact]
    public void Validation_names_each_field()
    {
        var filter = new TaskFilter
        {
            State = TaskState.Queued,
            Task = "",
            Queue = "no spaces",
            FinishedAfter = DateTimeOffset.UnixEpoch.AddDays(2),
            FinishedBefore = DateTimeOffset.UnixEpoch.AddDays(1),
            Limit = 0,
        };

        var errors = filter.Validate(purge: true);

        Assert.Equal(["state", "task", "queue", "finishedAfter", "limit"], errors.Select(e => e.Field));
        Assert.Contains("give one of dead, cancelled, expired, succeeded", errors[0].Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Matches_checks_every_filter_with_the_finish_window_half_open()
    {
        var at = DateTimeOffset.UnixEpoch.AddDays(10);
        var record = new TaskRecord { Id = Guid.CreateVersion7(), Task = "a", Queue = "q", State = TaskState.Dead, FinishedAt = at };

        Assert.True(new TaskFilter { Task = "a", Queue = "q", FinishedAfter = at, FinishedBefore = at.AddTicks(1) }.Matches(record));
        Assert.False(new TaskFilter { FinishedBefore = at }.Matches(record));
        Assert.False(new TaskFilter { Task = "b" }.Matches(record));
        Assert.False(new TaskFilter { State = TaskState.Cancelled }.Matches(record));
    }
}
