using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Tests;

public sealed class TaskRegistryUnitTests
{
    public sealed record ResizeArgs(string Path, int Width);

    public sealed record ResizeResult(string Output);

    private sealed class ResizeTask : ITaskHandler<ResizeArgs, ResizeResult>
    {
        public Task<ResizeResult> HandleAsync(ResizeArgs args, TaskContext context, CancellationToken cancellationToken) =>
            Task.FromResult(new ResizeResult($"{args.Path}@{args.Width}"));
    }

    private sealed class OtherResizeTask : ITaskHandler<ResizeArgs>
    {
        public Task HandleAsync(ResizeArgs args, TaskContext context, CancellationToken cancellationToken) => Task.CompletedTask;
    }

    private sealed class RawTask : ITaskHandler<JsonElement>
    {
        public Task HandleAsync(JsonElement args, TaskContext context, CancellationToken cancellationToken) => Task.CompletedTask;
    }

    private sealed class NotAHandler;

    private static ConveyorBuilder Builder() => new ServiceCollection().AddConveyor();

    [Fact]
    public void Registered_task_is_found_by_name_with_its_types_and_defaults()
    {
        var registry = Builder().AddTask<ResizeTask>("images.resize", d => { d.Queue = "images"; d.MaxAttempts = 2; }).Registry;

        Assert.True(registry.TryGet("images.resize", out var descriptor));
        Assert.Equal(typeof(ResizeTask), descriptor.HandlerType);
        Assert.Equal(typeof(ResizeArgs), descriptor.ArgsType);
        Assert.Equal(typeof(ResizeResult), descriptor.ResultType);
        Assert.Equal("images", descriptor.Defaults.Queue);
        Assert.Equal(2, descriptor.Defaults.MaxAttempts);
        Assert.False(registry.TryGet("images.Resize", out _));
    }

    [Fact]
    public void Registering_the_same_handler_twice_under_one_name_is_allowed()
    {
        var builder = Builder().AddTask<ResizeTask>("images.resize");

        builder.AddTask<ResizeTask>("images.resize", d => d.Priority = 5);

        Assert.Single(builder.Registry.Tasks);
        Assert.True(builder.Registry.TryGet("images.resize", out var descriptor));
        Assert.Equal(5, descriptor.Defaults.Priority);
    }

    [Fact]
    public void Registering_another_handler_under_a_taken_name_throws()
    {
        var builder = Builder().AddTask<ResizeTask>("images.resize");

        var error = Assert.Throws<InvalidOperationException>(() => builder.AddTask<OtherResizeTask>("images.resize"));

        Assert.Contains("images.resize", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Registering_a_class_that_is_no_handler_throws()
    {
        Assert.Throws<ArgumentException>(() => Builder().AddTask<NotAHandler>("nothing"));
    }

    [Theory]
    [InlineData("")]
    [InlineData(" ")]
    public void Registering_without_a_name_throws(string name)
    {
        Assert.ThrowsAny<ArgumentException>(() => Builder().AddTask<ResizeTask>(name));
    }

    [Fact]
    public void AddConveyor_twice_shares_one_registry()
    {
        var services = new ServiceCollection();
        services.AddConveyor().AddTask<ResizeTask>("images.resize");

        var again = services.AddConveyor();

        Assert.True(again.Registry.TryGet("images.resize", out _));
    }

    [Theory]
    [InlineData("""{"path":"a.png","width":10}""")]
    [InlineData("""{"Path":"a.png"}""")]
    [InlineData("{}")]
    public void Arguments_that_read_as_the_arguments_type_are_valid(string json)
    {
        Builder().AddTask<ResizeTask>("images.resize").Registry.TryGet("images.resize", out var descriptor);

        Assert.Null(descriptor!.ValidateArgs(json));
    }

    [Theory]
    [InlineData("""{"path":1}""")]
    [InlineData("""{"width":"wide"}""")]
    [InlineData("[]")]
    [InlineData("null")]
    [InlineData(null)]
    public void Arguments_that_do_not_read_as_the_arguments_type_are_invalid(string? json)
    {
        Builder().AddTask<ResizeTask>("images.resize").Registry.TryGet("images.resize", out var descriptor);

        Assert.NotNull(descriptor!.ValidateArgs(json));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("[1,2]")]
    [InlineData("\"text\"")]
    public void Tasks_taking_raw_json_or_no_arguments_accept_any_arguments(string? json)
    {
        var registry = Builder().AddTask<RawTask>("raw").AddNoopTask().Registry;

        Assert.Null(registry.Tasks.Single(t => t.Name == "raw").ValidateArgs(json));
        Assert.Null(registry.Tasks.Single(t => t.Name == NoopTask.Name).ValidateArgs(json));
    }

    [Fact]
    public async Task Invoking_a_task_passes_its_arguments_and_returns_its_result_as_json()
    {
        var builder = Builder().AddTask<ResizeTask>("images.resize");
        await using var provider = builder.Services.BuildServiceProvider();
        builder.Registry.TryGet("images.resize", out var descriptor);
        var message = new TaskMessage { Id = Guid.CreateVersion7(), Task = "images.resize", CreatedAt = DateTimeOffset.UtcNow };
        await using var scope = provider.CreateAsyncScope();

        var result = await descriptor!.InvokeAsync(scope.ServiceProvider, new TaskContext(message, 1, false), """{"path":"a.png","width":64}""", CancellationToken.None);

        Assert.Equal("""{"output":"a.png@64"}""", result);
    }
}

public sealed class TaskRetryRegistrationUnitTests
{
    [TaskRetry(Backoff = RetryBackoff.Fixed, DelaySeconds = 30, Jitter = 0.1, MaxAttempts = 9, MaxSnoozes = 1440,
        RetryOn = [typeof(HttpRequestException), typeof(TimeoutException)], NeverRetryOn = [typeof(ArgumentException)])]
    private sealed class CallScoring : ITaskHandler<NoArgs>
    {
        public Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken) => Task.CompletedTask;
    }

    [TaskRetry(DelaySeconds = 2, MaxDelaySeconds = 60)]
    private sealed class ExponentialOnly : ITaskHandler<NoArgs>
    {
        public Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken) => Task.CompletedTask;
    }

    private sealed class Plain : ITaskHandler<NoArgs>
    {
        public Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken) => Task.CompletedTask;
    }

    private static TaskDefaults Defaults<THandler>(Action<TaskDefaults>? configure = null) where THandler : class
    {
        var registry = new ServiceCollection().AddConveyor().AddTask<THandler>("t", configure).Registry;
        Assert.True(registry.TryGet("t", out var descriptor));
        return descriptor.Defaults;
    }

    [Fact]
    public void The_attribute_sets_the_tasks_policy_attempts_and_snooze_limit()
    {
        var defaults = Defaults<CallScoring>();

        Assert.Equal(RetryPolicy.Fixed(TimeSpan.FromSeconds(30), 0.1) with
        {
            RetryOn = ["System.Net.Http.HttpRequestException", "System.TimeoutException"],
            NeverRetryOn = ["System.ArgumentException"],
        }, defaults.Retry);
        Assert.Equal(9, defaults.MaxAttempts);
        Assert.Equal(1440, defaults.MaxSnoozes);
    }

    [Fact]
    public void Unset_attribute_properties_leave_the_defaults()
    {
        var defaults = Defaults<ExponentialOnly>();

        Assert.Equal(RetryPolicy.Exponential(TimeSpan.FromSeconds(2), TimeSpan.FromMinutes(1)), defaults.Retry);
        Assert.Equal(5, defaults.MaxAttempts);
        Assert.Null(defaults.MaxSnoozes);
        Assert.Equal(RetryPolicy.Default, Defaults<Plain>().Retry);
    }

    [Fact]
    public void Code_at_registration_wins_over_the_attribute()
    {
        var defaults = Defaults<CallScoring>(t => t.Retry = t.Retry with { RetryOn = [] });

        Assert.Empty(defaults.Retry.RetryOn);
        Assert.Equal(TimeSpan.FromSeconds(30), defaults.Retry.BaseDelay);
        Assert.Equal(9, defaults.MaxAttempts);
    }

    [Fact]
    public void Invalid_defaults_are_refused_at_registration_naming_the_task_and_the_setting()
    {
        var error = Assert.Throws<ArgumentException>(() => Defaults<Plain>(t =>
        {
            t.Retry = RetryPolicy.Default with { Jitter = 3 };
            t.MaxSnoozes = -1;
        }));

        Assert.Contains("Task 't'", error.Message, StringComparison.Ordinal);
        Assert.Contains("Retry.jitter", error.Message, StringComparison.Ordinal);
        Assert.Contains("MaxSnoozes", error.Message, StringComparison.Ordinal);
    }
}
