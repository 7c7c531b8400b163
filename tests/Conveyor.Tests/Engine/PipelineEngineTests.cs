using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Conveyor.Tests.Engine;

/// <summary>The pipeline seam through a real host: enqueue and task middleware, lifecycle events, the logging middleware.</summary>
public sealed class PipelineEngineTests
{
    private static readonly RetryPolicy FastRetry = new(TimeSpan.FromMilliseconds(10), TimeSpan.FromMilliseconds(50), Jitter: 0);

    /// <summary>Records the order middleware ran in, shared by the test's middleware.</summary>
    internal sealed class Trace
    {
        public ConcurrentQueue<string> Steps { get; } = new();
    }

    internal sealed class StampingEnqueueMiddleware(Trace trace) : IEnqueueMiddleware
    {
        public async ValueTask<IReadOnlyList<EnqueueResult>> EnqueueAsync(EnqueueContext context, EnqueueDelegate next)
        {
            trace.Steps.Enqueue("stamp:before");
            for (var i = 0; i < context.Messages.Count; i++)
            {
                var headers = new Dictionary<string, string>(context.Messages[i].Headers ?? new Dictionary<string, string>()) { ["tenant"] = "acme" };
                context.Messages[i] = context.Messages[i] with { Headers = headers };
            }
            var results = await next(context);
            trace.Steps.Enqueue($"stamp:after:{results.Count}");
            return results;
        }
    }

    internal sealed class RefusingEnqueueMiddleware(Trace trace) : IEnqueueMiddleware
    {
        public ValueTask<IReadOnlyList<EnqueueResult>> EnqueueAsync(EnqueueContext context, EnqueueDelegate next)
        {
            trace.Steps.Enqueue("refuse");
            if (context.Messages.Any(m => m.Task == "test.forbidden"))
            {
                throw new InvalidOperationException("test.forbidden may not be enqueued");
            }
            return next(context);
        }
    }

    internal sealed class OuterTaskMiddleware(Trace trace) : ITaskMiddleware
    {
        public async ValueTask InvokeAsync(TaskExecutionContext context, TaskExecutionDelegate next)
        {
            trace.Steps.Enqueue("outer:before:" + context.Message.Headers?.GetValueOrDefault("tenant"));
            try
            {
                await next(context);
                trace.Steps.Enqueue("outer:after:" + context.Result);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                trace.Steps.Enqueue("outer:failed:" + ex.Message);
                throw;
            }
        }
    }

    internal sealed class ArgsRewritingMiddleware(Trace trace) : ITaskMiddleware
    {
        public ValueTask InvokeAsync(TaskExecutionContext context, TaskExecutionDelegate next)
        {
            trace.Steps.Enqueue("inner:before");
            if (context.Message.Task == EchoTask.Name)
            {
                context.Message = context.Message with { Args = """{"text":"rewritten"}""" };
            }
            if (context.Message.Task == "test.shortcut")
            {
                // Answered here: the handler never runs.
                context.Result = "\"from middleware\"";
                return ValueTask.CompletedTask;
            }
            return next(context);
        }
    }

    internal sealed record EchoArgs(string Text);

    internal sealed class EchoTask : ITaskHandler<EchoArgs, string>
    {
        public const string Name = "test.echo";

        public Task<string> HandleAsync(EchoArgs args, TaskContext context, CancellationToken cancellationToken) => Task.FromResult(args.Text);
    }

    internal sealed class NeverRunTask(Probe probe) : ITaskHandler<NoArgs>
    {
        public Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken)
        {
            probe.Ran();
            return Task.CompletedTask;
        }
    }

    [Fact]
    public async Task Enqueue_middleware_runs_in_order_can_change_headers_and_sees_the_results()
    {
        var trace = new Trace();
        await using var host = new EngineHost(c =>
        {
            c.Services.AddSingleton(trace);
            c.UseEnqueueMiddleware<RefusingEnqueueMiddleware>().UseEnqueueMiddleware<StampingEnqueueMiddleware>();
        }, o => o.RunWorker = false);
        await host.StartAsync();

        var result = await host.Client.EnqueueAsync("test.anything", new { n = 1 });

        Assert.Equal(["refuse", "stamp:before", "stamp:after:1"], trace.Steps);
        var record = await host.Client.GetAsync(result.Id);
        Assert.Equal("acme", record!.Headers!["tenant"]);
        Assert.Equal("acme", result.Message!.Headers!["tenant"]);
    }

    [Fact]
    public async Task Enqueue_middleware_that_throws_stores_nothing_and_the_caller_sees_its_exception()
    {
        var trace = new Trace();
        await using var host = new EngineHost(c =>
        {
            c.Services.AddSingleton(trace);
            c.UseEnqueueMiddleware<RefusingEnqueueMiddleware>();
        }, o => o.RunWorker = false);
        await host.StartAsync();

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            host.Client.EnqueueManyAsync([new TaskRequest("test.fine"), new TaskRequest("test.forbidden")]));

        Assert.Contains("test.forbidden", error.Message, StringComparison.Ordinal);
        var stats = await host.Backend.Store.GetQueuesAsync(CancellationToken.None);
        Assert.All(stats, q => Assert.Equal(0, q.Count(TaskState.Queued)));
    }

    [Fact]
    public async Task Task_middleware_wraps_the_handler_in_order_and_can_rewrite_its_arguments()
    {
        var trace = new Trace();
        await using var host = new EngineHost(c =>
        {
            c.Services.AddSingleton(trace);
            c.AddTask<EchoTask>(EchoTask.Name);
            c.UseEnqueueMiddleware<StampingEnqueueMiddleware>();
            c.UseTaskMiddleware<OuterTaskMiddleware>().UseTaskMiddleware<ArgsRewritingMiddleware>();
        });
        await host.StartAsync();

        var result = await host.Client.EnqueueAsync(EchoTask.Name, new EchoArgs("original"));
        var record = await host.WaitForStateAsync(result.Id, TaskState.Succeeded);

        Assert.Equal("\"rewritten\"", record.Result);
        // The headers an enqueue middleware set reach the task middleware; the outer one sees the inner one's result.
        Assert.Equal(["stamp:before", "stamp:after:1", "outer:before:acme", "inner:before", "outer:after:\"rewritten\""], trace.Steps);
        // The stored arguments are what was enqueued: a middleware changes what the handler receives, not the task.
        Assert.Equal("original", JsonDocument.Parse(record.Args!).RootElement.GetProperty("text").GetString());
    }

    [Fact]
    public async Task Task_middleware_can_short_circuit_and_the_handler_never_runs()
    {
        var trace = new Trace();
        await using var host = new EngineHost(c =>
        {
            c.Services.AddSingleton(trace);
            c.AddTask<NeverRunTask>("test.shortcut");
            c.UseTaskMiddleware<ArgsRewritingMiddleware>();
        });
        await host.StartAsync();

        var result = await host.Client.EnqueueAsync("test.shortcut");
        var record = await host.WaitForStateAsync(result.Id, TaskState.Succeeded);

        Assert.Equal("\"from middleware\"", record.Result);
        Assert.Equal(0, host.Probe.Runs);
    }

    [Fact]
    public async Task Task_middleware_observes_a_failure_and_the_task_is_retried_by_its_policy()
    {
        var trace = new Trace();
        await using var host = new EngineHost(c =>
        {
            c.Services.AddSingleton(trace);
            c.AddTask<FailingTask>(FailingTask.Name);
            c.UseTaskMiddleware<OuterTaskMiddleware>();
        });
        await host.StartAsync();

        var result = await host.Client.EnqueueAsync(FailingTask.Name, options: new EnqueueOptions { MaxAttempts = 2, Retry = FastRetry });
        await host.WaitForStateAsync(result.Id, TaskState.Dead);

        Assert.Equal(["outer:before:", "outer:failed:attempt 1 failed", "outer:before:", "outer:failed:attempt 2 failed"], trace.Steps);
    }

    [Fact]
    public async Task Lifecycle_events_reach_observers_in_order_with_the_worker_and_the_error()
    {
        var events = new ConcurrentQueue<TaskEvent>();
        await using var host = new EngineHost(c =>
        {
            c.AddTask<FailingTask>(FailingTask.Name).AddTask<CountingTask>(CountingTask.Name);
            c.OnTaskEvent(events.Enqueue);
        });
        await host.StartAsync();

        var failing = await host.Client.EnqueueAsync(FailingTask.Name, options: new EnqueueOptions { MaxAttempts = 2, Retry = FastRetry });
        var counting = await host.Client.EnqueueAsync(CountingTask.Name);
        await host.WaitForStateAsync(failing.Id, TaskState.Dead);
        await host.WaitForStateAsync(counting.Id, TaskState.Succeeded);
        // The outcome's event is raised once its completion is written, which the state above already shows.
        await WaitUntilAsync(() => events.Count(e => e.TaskId == failing.Id) == 5 && events.Any(e => e.TaskId == counting.Id && e.Kind == TaskEventKind.Succeeded));

        var ofFailing = events.Where(e => e.TaskId == failing.Id).ToList();
        // Enqueued is raised once the enqueue returns, which the worker's first start may precede: the order holds from
        // Started on.
        Assert.Single(ofFailing, e => e.Kind == TaskEventKind.Enqueued);
        Assert.Equal([TaskEventKind.Started, TaskEventKind.Retrying, TaskEventKind.Started, TaskEventKind.Dead],
            ofFailing.Where(e => e.Kind != TaskEventKind.Enqueued).Select(e => e.Kind));
        var workerId = host.Services.GetRequiredService<WorkerStatus>().WorkerId;
        var dead = ofFailing.Single(e => e.Kind == TaskEventKind.Dead);
        Assert.Equal(2, dead.Attempt);
        Assert.Equal(workerId, dead.WorkerId);
        Assert.Equal("attempt 2 failed", dead.Error?.Message);
        Assert.True(dead.IsFailure);
        Assert.NotNull(dead.Duration);
        var retrying = ofFailing.Single(e => e.Kind == TaskEventKind.Retrying);
        Assert.NotNull(retrying.RetryAt);
        var ofCounting = events.Where(e => e.TaskId == counting.Id).ToList();
        Assert.Equal([TaskEventKind.Started, TaskEventKind.Succeeded], ofCounting.Where(e => e.Kind != TaskEventKind.Enqueued).Select(e => e.Kind));
        Assert.Equal(TaskState.Queued, Assert.Single(ofCounting, e => e.Kind == TaskEventKind.Enqueued).State);
        // The worker stays on the finished task.
        Assert.Equal(workerId, (await host.Client.GetAsync(counting.Id))!.WorkerId);
    }

    [Fact]
    public async Task Cancelling_a_waiting_task_and_retrying_it_raise_events()
    {
        var events = new ConcurrentQueue<TaskEvent>();
        await using var host = new EngineHost(c => c.OnTaskEvent(events.Enqueue), o => o.RunWorker = false);
        await host.StartAsync();

        var result = await host.Client.EnqueueAsync("test.waiting", options: new EnqueueOptions { Delay = TimeSpan.FromHours(1) });
        Assert.Equal(CancelOutcome.Cancelled, await host.Client.CancelAsync(result.Id));
        Assert.Equal(RetryOutcome.Requeued, await host.Client.RetryAsync(result.Id));

        Assert.Equal([(TaskEventKind.Enqueued, TaskState.Scheduled), (TaskEventKind.Cancelled, TaskState.Cancelled), (TaskEventKind.Enqueued, TaskState.Queued)],
            events.Select(e => (e.Kind, e.State)));
        Assert.All(events, e => Assert.Equal("test.waiting", e.Task));
    }

    [Fact]
    public async Task An_observer_that_throws_does_not_fail_the_task()
    {
        await using var host = new EngineHost(c =>
        {
            c.AddTask<CountingTask>(CountingTask.Name);
            c.OnTaskEvent(_ => throw new InvalidOperationException("observer failed"));
        });
        await host.StartAsync();

        var result = await host.Client.EnqueueAsync(CountingTask.Name);

        await host.WaitForStateAsync(result.Id, TaskState.Succeeded);
    }

    [Fact]
    public async Task The_logging_middleware_logs_start_and_end_at_debug_and_failures_at_warning_with_the_task_fields()
    {
        var logs = new CapturingLoggerProvider();
        await using var host = new EngineHost(c =>
        {
            c.Services.AddSingleton<ILoggerProvider>(logs);
            c.Services.AddLogging(l => l.SetMinimumLevel(LogLevel.Debug));
            c.AddTask<CountingTask>(CountingTask.Name).AddTask<PermanentlyFailingTask>(PermanentlyFailingTask.Name);
        });
        await host.StartAsync();

        var ok = await host.Client.EnqueueAsync(CountingTask.Name, options: new EnqueueOptions { Queue = "default" });
        var bad = await host.Client.EnqueueAsync(PermanentlyFailingTask.Name);
        await host.WaitForStateAsync(ok.Id, TaskState.Succeeded);
        await host.WaitForStateAsync(bad.Id, TaskState.Dead);

        var lines = logs.Entries.Where(e => e.Category == typeof(TaskLoggingMiddleware).FullName).ToList();
        var workerId = host.Services.GetRequiredService<WorkerStatus>().WorkerId;
        Assert.Contains(lines, l => l.Level == LogLevel.Debug && l.Message.Contains($"Task {ok.Id} {CountingTask.Name} on default started attempt 1 on {workerId}", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Level == LogLevel.Debug && l.Message.Contains($"Task {ok.Id} {CountingTask.Name} on default succeeded attempt 1 on {workerId} in ", StringComparison.Ordinal));
        var failure = Assert.Single(lines, l => l.Level == LogLevel.Warning);
        Assert.Contains($"Task {bad.Id} {PermanentlyFailingTask.Name} on default failed attempt 1 on {workerId} after ", failure.Message, StringComparison.Ordinal);
        Assert.IsType<PermanentTaskException>(failure.Exception);
    }

    [Fact]
    public async Task With_LogTasks_off_the_logging_middleware_is_left_out()
    {
        var logs = new CapturingLoggerProvider();
        await using var host = new EngineHost(c =>
        {
            c.Services.AddSingleton<ILoggerProvider>(logs);
            c.Services.AddLogging(l => l.SetMinimumLevel(LogLevel.Debug));
            c.AddTask<PermanentlyFailingTask>(PermanentlyFailingTask.Name);
        }, o =>
        {
            o.LogTasks = false;
            // With tracing off too, nothing is left in the pipeline: the worker calls the handler directly.
            o.TraceTasks = false;
        });
        await host.StartAsync();

        var bad = await host.Client.EnqueueAsync(PermanentlyFailingTask.Name);
        await host.WaitForStateAsync(bad.Id, TaskState.Dead);

        Assert.True(host.Services.GetRequiredService<ExecutionPipeline>().IsEmpty);
        Assert.DoesNotContain(logs.Entries, e => e.Category == typeof(TaskLoggingMiddleware).FullName);
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not met within 20 s");
            await Task.Delay(10);
        }
    }
}

/// <summary>Keeps every log entry written through it.</summary>
internal sealed class CapturingLoggerProvider : ILoggerProvider
{
    public sealed record Entry(string Category, LogLevel Level, string Message, Exception? Exception);

    public ConcurrentQueue<Entry> Entries { get; } = new();

    public ILogger CreateLogger(string categoryName) => new CapturingLogger(this, categoryName);

    public void Dispose()
    {
    }

    private sealed class CapturingLogger(CapturingLoggerProvider provider, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            provider.Entries.Enqueue(new Entry(category, logLevel, formatter(state, exception), exception));
    }
}
