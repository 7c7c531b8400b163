using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Tests;

public sealed class TaskRequestValidatorUnitTests
{
    private sealed record ScoreArgs(string Flight, int Points);

    private sealed class ScoreTask : ITaskHandler<ScoreArgs>
    {
        public Task HandleAsync(ScoreArgs args, TaskContext context, CancellationToken cancellationToken) => Task.CompletedTask;
    }

    private sealed class UnreachableBackend : Backends.IConveyorBackend
    {
        public string Name => "unreachable";
        public Backends.IQueueBackend Queue => throw new InvalidOperationException("the backend must not be reached");
        public Backends.ITaskStore Store => throw new InvalidOperationException("the backend must not be reached");
        public Backends.ICoordinationBackend Coordination => throw new InvalidOperationException("the backend must not be reached");
        public Backends.IScheduleStore Schedules => throw new InvalidOperationException("the backend must not be reached");
        public Backends.IUniqueKeyStore UniqueKeys => throw new InvalidOperationException("the backend must not be reached");
        public Backends.INotifier Notifier => throw new InvalidOperationException("the backend must not be reached");
        public Backends.ILimitStore Limits => throw new InvalidOperationException("the backend must not be reached");
        public Backends.BackendCapabilities Capabilities => throw new InvalidOperationException("the backend must not be reached");
        public Task MigrateAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public Task<Backends.BackendHealth> CheckHealthAsync(CancellationToken cancellationToken) => throw new InvalidOperationException();
    }

    private static TaskRegistry Registry()
    {
        var builder = new ServiceCollection().AddConveyor().AddTask<ScoreTask>("flights.score");
        return builder.Registry;
    }

    private static List<FieldError> Validate(TaskRequest request, TaskRegistry? registry = null, bool requireRegistered = false, string prefix = "")
    {
        var errors = new List<FieldError>();
        TaskRequestValidator.Validate(request, registry, requireRegistered, prefix, errors);
        return errors;
    }

    private static FieldError Single(TaskRequest request, TaskRegistry? registry = null, bool requireRegistered = false) =>
        Assert.Single(Validate(request, registry, requireRegistered));

    private static TaskRequest With(EnqueueOptions options) => new("flights.score", null, options);

    [Fact]
    public void Valid_request_has_no_errors()
    {
        var request = new TaskRequest("flights.score", """{"flight":"LH1","points":3}""", new EnqueueOptions
        {
            Queue = "scores.eu-1",
            Priority = 10,
            Delay = TimeSpan.FromSeconds(30),
            MaxAttempts = 3,
            Timeout = TimeSpan.FromMinutes(1),
            IdempotencyKey = "LH1",
        });

        Assert.Empty(Validate(request, Registry(), requireRegistered: true));
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    public void Task_name_is_required(string name)
    {
        Assert.Equal(new FieldError("task", "is required"), Single(new TaskRequest(name)));
    }

    [Fact]
    public void Task_name_longer_than_200_characters_is_rejected()
    {
        Assert.Empty(Validate(new TaskRequest(new string('t', 200))));
        Assert.Equal("task", Single(new TaskRequest(new string('t', 201))).Field);
    }

    [Fact]
    public void Unknown_task_is_rejected_only_when_registration_is_required()
    {
        Assert.Empty(Validate(new TaskRequest("nobody.knows"), Registry(), requireRegistered: false));
        var error = Single(new TaskRequest("nobody.knows"), Registry(), requireRegistered: true);
        Assert.Equal("task", error.Field);
        Assert.Contains("nobody.knows", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"flight": 12, "points": "x"}""")]
    [InlineData("[1, 2]")]
    [InlineData("null")]
    [InlineData("{not json")]
    public void Arguments_that_do_not_match_the_registered_task_are_rejected(string args)
    {
        Assert.Equal("args", Single(new TaskRequest("flights.score", args), Registry()).Field);
    }

    [Fact]
    public void Arguments_are_not_checked_for_an_unregistered_task()
    {
        Assert.Empty(Validate(new TaskRequest("other", "{not json")));
    }

    [Theory]
    [InlineData("")]
    [InlineData("has space")]
    [InlineData("slash/queue")]
    [InlineData("ünïcode")]
    public void Invalid_queue_name_is_rejected(string queue)
    {
        Assert.Equal("queue", Single(With(new EnqueueOptions { Queue = queue })).Field);
    }

    [Fact]
    public void Queue_name_longer_than_100_characters_is_rejected()
    {
        Assert.Empty(Validate(With(new EnqueueOptions { Queue = new string('q', 100) })));
        Assert.Equal("queue", Single(With(new EnqueueOptions { Queue = new string('q', 101) })).Field);
    }

    [Theory]
    [InlineData(-101)]
    [InlineData(101)]
    public void Priority_out_of_range_is_rejected(int priority)
    {
        Assert.Equal("priority", Single(With(new EnqueueOptions { Priority = priority })).Field);
    }

    [Theory]
    [InlineData(-100)]
    [InlineData(100)]
    public void Priority_at_its_bounds_is_accepted(int priority)
    {
        Assert.Empty(Validate(With(new EnqueueOptions { Priority = priority })));
    }

    [Fact]
    public void Negative_delay_is_rejected()
    {
        Assert.Equal("delay", Single(With(new EnqueueOptions { Delay = TimeSpan.FromSeconds(-1) })).Field);
        Assert.Empty(Validate(With(new EnqueueOptions { Delay = TimeSpan.Zero })));
    }

    [Fact]
    public void Delay_and_eta_together_are_rejected()
    {
        var error = Single(With(new EnqueueOptions { Delay = TimeSpan.FromSeconds(1), Eta = DateTimeOffset.UtcNow }));

        Assert.Equal("eta", error.Field);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-3)]
    [InlineData(1001)]
    public void Max_attempts_out_of_range_is_rejected(int attempts)
    {
        Assert.Equal("maxAttempts", Single(With(new EnqueueOptions { MaxAttempts = attempts })).Field);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(1000)]
    public void Max_attempts_at_its_bounds_is_accepted(int attempts)
    {
        Assert.Empty(Validate(With(new EnqueueOptions { MaxAttempts = attempts })));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-5)]
    public void Timeout_that_is_not_positive_is_rejected(int seconds)
    {
        Assert.Equal("timeout", Single(With(new EnqueueOptions { Timeout = TimeSpan.FromSeconds(seconds) })).Field);
    }

    [Fact]
    public void Idempotency_key_must_be_1_to_200_characters()
    {
        Assert.Equal("idempotencyKey", Single(With(new EnqueueOptions { IdempotencyKey = "" })).Field);
        Assert.Equal("idempotencyKey", Single(With(new EnqueueOptions { IdempotencyKey = new string('k', 201) })).Field);
        Assert.Empty(Validate(With(new EnqueueOptions { IdempotencyKey = new string('k', 200) })));
    }

    [Fact]
    public void Every_problem_is_reported_with_the_prefix()
    {
        var request = new TaskRequest("", null, new EnqueueOptions { Queue = "bad queue", Priority = 500, MaxAttempts = 0 });

        var errors = Validate(request, prefix: "tasks[3].");

        Assert.Equal(["tasks[3].task", "tasks[3].queue", "tasks[3].priority", "tasks[3].maxAttempts"], errors.Select(e => e.Field));
    }

    [Fact]
    public async Task Client_rejects_an_invalid_batch_naming_each_field_and_stores_nothing()
    {
        var services = new ServiceCollection();
        services.AddConveyor().UseBackend(_ => new UnreachableBackend());
        await using var provider = services.BuildServiceProvider();
        var client = provider.GetRequiredService<ITaskClient>();

        var error = await Assert.ThrowsAsync<TaskValidationException>(() => client.EnqueueManyAsync(
        [
            new TaskRequest("ok"),
            new TaskRequest("bad", null, new EnqueueOptions { Priority = 1000 }),
        ]));

        Assert.Equal(["tasks[1].priority"], error.Errors.Select(e => e.Field));
    }
}

public sealed class RetryRequestValidationUnitTests
{
    private static List<FieldError> Validate(EnqueueOptions options, string prefix = "")
    {
        var errors = new List<FieldError>();
        TaskRequestValidator.Validate(new TaskRequest("flights.score", null, options), null, requireRegistered: false, prefix, errors);
        return errors;
    }

    [Fact]
    public void A_valid_policy_passes()
    {
        Assert.Empty(Validate(new EnqueueOptions { Retry = RetryPolicy.Fixed(TimeSpan.FromSeconds(5)).WithRetryOn<TimeoutException>() }));
    }

    [Fact]
    public void Policy_problems_are_named_under_retry_and_the_batch_prefix()
    {
        var errors = Validate(new EnqueueOptions { Retry = RetryPolicy.Default with { Jitter = 2, RetryOn = ["not valid"] } }, "tasks[2].");

        Assert.Equal(["tasks[2].retry.jitter", "tasks[2].retry.retryOn[0]"], errors.Select(e => e.Field));
    }

    [Theory]
    [InlineData("conveyor-retry-on")]
    [InlineData("Conveyor-Never-Retry-On")]
    public void Reserved_headers_cannot_be_set_by_an_enqueue(string name)
    {
        var error = Assert.Single(Validate(new EnqueueOptions { Headers = new Dictionary<string, string> { [name] = "X" } }));

        Assert.Equal($"headers.{name}", error.Field);
        Assert.Contains("reserved", error.Message, StringComparison.Ordinal);
    }
}
