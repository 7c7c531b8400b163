using System.Collections.Concurrent;
using System.Diagnostics;
using Conveyor.Testing;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Tests;

/// <summary>Trace context written into messages at enqueue, and the attempt's span the tracing middleware starts from it.</summary>
public sealed class TracingUnitTests
{
    private static TaskMessage Message(IReadOnlyDictionary<string, string>? headers = null) => new()
    {
        Id = Guid.CreateVersion7(),
        Task = "trace.unit",
        Queue = "traced",
        Headers = headers,
        CreatedAt = DateTimeOffset.UtcNow,
    };

    /// <summary>A listener on Conveyor's source that samples every activity as <paramref name="sampling"/> says and, given
    /// <paramref name="stopped"/>, collects the stopped activities of <paramref name="traceId"/> (other tests' pass by).</summary>
    private static ActivityListener Listen(ActivitySamplingResult sampling, ActivityTraceId traceId = default, ConcurrentQueue<Activity>? stopped = null)
    {
        var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == ConveyorDiagnostics.Name,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => sampling,
            ActivityStopped = stopped is null ? null : activity =>
            {
                if (activity.TraceId == traceId)
                {
                    stopped.Enqueue(activity);
                }
            },
        };
        ActivitySource.AddActivityListener(listener);
        return listener;
    }

    [Fact]
    public void Inject_gives_each_message_without_a_traceparent_the_current_context_and_keeps_the_headers_it_had()
    {
        var own = $"00-{ActivityTraceId.CreateRandom()}-{ActivitySpanId.CreateRandom()}-01";
        var messages = new[]
        {
            Message(),
            Message(),
            Message(new Dictionary<string, string> { ["x"] = "1" }),
            Message(new Dictionary<string, string> { [ConveyorDiagnostics.TraceParentHeader] = own }),
        };
        using (var activity = new Activity("enqueue").SetIdFormat(ActivityIdFormat.W3C).Start())
        {
            TraceContext.Inject(messages);
            Assert.Equal(activity.Id, messages[0].Headers![ConveyorDiagnostics.TraceParentHeader]);
            Assert.Equal(activity.Id, messages[1].Headers![ConveyorDiagnostics.TraceParentHeader]);
            Assert.Single(messages[1].Headers!);
            Assert.Equal("1", messages[2].Headers!["x"]);
            Assert.Equal(activity.Id, messages[2].Headers![ConveyorDiagnostics.TraceParentHeader]);
            Assert.Equal(own, Assert.Single(messages[3].Headers!).Value);
        }

        // Without a current activity nothing is written.
        var plain = new[] { Message() };
        TraceContext.Inject(plain);
        Assert.Null(plain[0].Headers);
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(3, true)]
    [InlineData(40, false)]
    public async Task An_attempt_runs_in_a_consumer_span_child_of_its_messages_context_with_its_tags(int attempt, bool redelivery)
    {
        var traceId = ActivityTraceId.CreateRandom();
        var parentSpan = ActivitySpanId.CreateRandom();
        var spans = new ConcurrentQueue<Activity>();
        using var listener = Listen(ActivitySamplingResult.AllDataAndRecorded, traceId, spans);
        var message = Message(new Dictionary<string, string> { [ConveyorDiagnostics.TraceParentHeader] = $"00-{traceId}-{parentSpan}-01" });
        using var services = new ServiceCollection().BuildServiceProvider();
        var context = new TaskExecutionContext(message, attempt, redelivery, "worker-1", services, CancellationToken.None);
        string? traceIdInside = null;

        await new TaskTracingMiddleware().InvokeAsync(context, _ =>
        {
            traceIdInside = Activity.Current?.TraceId.ToString();
            return ValueTask.CompletedTask;
        });

        var span = Assert.Single(spans);
        Assert.Equal(traceId.ToString(), traceIdInside);
        Assert.Equal("process trace.unit", span.DisplayName);
        Assert.Equal(ActivityKind.Consumer, span.Kind);
        Assert.Equal(parentSpan, span.ParentSpanId);
        Assert.Equal("conveyor", span.GetTagItem("messaging.system"));
        Assert.Equal("traced", span.GetTagItem("messaging.destination.name"));
        Assert.Equal(message.Id.ToString(), span.GetTagItem("messaging.message.id"));
        Assert.Equal("trace.unit", span.GetTagItem("conveyor.task"));
        Assert.Equal(attempt, span.GetTagItem("conveyor.attempt"));
        Assert.Equal("worker-1", span.GetTagItem("conveyor.worker"));
        Assert.Equal(redelivery ? true : null, span.GetTagItem("conveyor.redelivery"));
    }

    [Theory]
    [InlineData(ActivitySamplingResult.AllDataAndRecorded, true)]
    [InlineData(ActivitySamplingResult.None, true)]
    [InlineData(ActivitySamplingResult.None, false)]
    public async Task The_callers_current_activity_is_its_own_while_and_after_an_attempt_runs_asynchronously(ActivitySamplingResult sampling, bool withContext)
    {
        using var listener = Listen(sampling);
        var traceParent = $"00-{ActivityTraceId.CreateRandom()}-{ActivitySpanId.CreateRandom()}-01";
        var message = Message(withContext ? new Dictionary<string, string> { [ConveyorDiagnostics.TraceParentHeader] = traceParent } : null);
        using var services = new ServiceCollection().BuildServiceProvider();
        var context = new TaskExecutionContext(message, 1, false, "worker-1", services, CancellationToken.None);
        using var caller = new Activity("worker loop").SetIdFormat(ActivityIdFormat.W3C).Start();
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Activity? inside = null;

        var attempt = new TaskTracingMiddleware().InvokeAsync(context, async _ =>
        {
            inside = Activity.Current;
            await release.Task;
            Assert.Same(inside, Activity.Current);
        });

        Assert.False(attempt.IsCompleted);
        // The caller (the worker's loop, which goes on to the next attempt) is still in its own activity.
        Assert.Same(caller, Activity.Current);
        if (withContext)
        {
            Assert.NotSame(caller, inside);
            Assert.Equal(traceParent.Split('-')[1], inside!.TraceId.ToString());
        }
        else
        {
            // Dropped by the sampler with no context to carry: the attempt runs in the caller's context.
            Assert.Same(caller, inside);
        }
        release.SetResult();
        await attempt;
        Assert.Same(caller, Activity.Current);
        Assert.True(inside!.IsStopped || !withContext);
    }

    [Theory]
    [InlineData(ActivitySamplingResult.AllDataAndRecorded, true)]
    [InlineData(ActivitySamplingResult.AllDataAndRecorded, false)]
    [InlineData(ActivitySamplingResult.None, true)]
    [InlineData(ActivitySamplingResult.None, false)]
    public void The_callers_current_activity_is_its_own_after_an_attempt_that_completes_synchronously(ActivitySamplingResult sampling, bool withContext)
    {
        using var listener = Listen(sampling);
        var traceId = ActivityTraceId.CreateRandom();
        var message = Message(withContext
            ? new Dictionary<string, string> { [ConveyorDiagnostics.TraceParentHeader] = $"00-{traceId}-{ActivitySpanId.CreateRandom()}-01" }
            : null);
        using var services = new ServiceCollection().BuildServiceProvider();
        var context = new TaskExecutionContext(message, 1, false, "worker-1", services, CancellationToken.None);
        using var caller = new Activity("worker loop").SetIdFormat(ActivityIdFormat.W3C).Start();
        Activity? inside = null;

        var attempt = new TaskTracingMiddleware().InvokeAsync(context, _ =>
        {
            inside = Activity.Current;
            return ValueTask.CompletedTask;
        });

        // Completed before anything yielded: the caller is back in its own activity, and the attempt's is over.
        Assert.True(attempt.IsCompletedSuccessfully);
        Assert.Same(caller, Activity.Current);
        if (withContext)
        {
            Assert.NotSame(caller, inside);
            Assert.Equal(traceId, inside!.TraceId);
            Assert.True(inside.IsStopped);
        }
        else if (sampling == ActivitySamplingResult.AllDataAndRecorded)
        {
            // A new span with no context of its own: a child of whatever the caller runs in.
            Assert.NotSame(caller, inside);
            Assert.Equal(caller.SpanId, inside!.ParentSpanId);
            Assert.True(inside.IsStopped);
        }
        else
        {
            Assert.Same(caller, inside);
        }
    }

    [Fact]
    public async Task A_handler_that_throws_before_it_yields_fails_its_span_once_and_leaves_the_caller_in_its_own_activity()
    {
        var traceId = ActivityTraceId.CreateRandom();
        var stopped = new ConcurrentQueue<Activity>();
        using var listener = Listen(ActivitySamplingResult.AllDataAndRecorded, traceId, stopped);
        var message = Message(new Dictionary<string, string> { [ConveyorDiagnostics.TraceParentHeader] = $"00-{traceId}-{ActivitySpanId.CreateRandom()}-01" });
        using var services = new ServiceCollection().BuildServiceProvider();
        var context = new TaskExecutionContext(message, 1, false, "worker-1", services, CancellationToken.None);
        using var caller = new Activity("worker loop").SetIdFormat(ActivityIdFormat.W3C).Start();

        var attempt = new TaskTracingMiddleware().InvokeAsync(context, _ => throw new InvalidOperationException("broken before any await"));

        Assert.True(attempt.IsFaulted);
        Assert.Same(caller, Activity.Current);
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await attempt);
        var span = Assert.Single(stopped);
        Assert.Equal(ActivityStatusCode.Error, span.Status);
        Assert.Equal(typeof(InvalidOperationException).FullName, span.StatusDescription);
    }

    [Fact]
    public async Task An_attempt_whose_context_nobody_records_runs_in_a_carrier_of_it_without_tags()
    {
        // A listener that samples nothing (as with no listener at all, while other tests' listeners are about): the
        // attempt still runs in the message's trace, in an activity that asks for no data and so holds no tags.
        using var listener = Listen(ActivitySamplingResult.None);
        var traceId = ActivityTraceId.CreateRandom();
        var parentSpan = ActivitySpanId.CreateRandom();
        var message = Message(new Dictionary<string, string>
        {
            [ConveyorDiagnostics.TraceParentHeader] = $"00-{traceId}-{parentSpan}-00",
            [ConveyorDiagnostics.TraceStateHeader] = "vendor=1",
        });
        using var services = new ServiceCollection().BuildServiceProvider();
        Activity? inside = null;

        await new TaskTracingMiddleware().InvokeAsync(new TaskExecutionContext(message, 2, true, "worker-1", services, CancellationToken.None), _ =>
        {
            inside = Activity.Current;
            return ValueTask.CompletedTask;
        });

        Assert.NotNull(inside);
        Assert.Equal(TaskTracingMiddleware.PlainActivityName, inside.OperationName);
        Assert.Equal(traceId, inside.TraceId);
        Assert.Equal(parentSpan, inside.ParentSpanId);
        Assert.Equal("vendor=1", inside.TraceStateString);
        Assert.Equal($"00-{traceId}-{parentSpan}-00", inside.ParentId);
        Assert.False(inside.Recorded);
        Assert.False(inside.IsAllDataRequested);
        Assert.Empty(inside.TagObjects);
        Assert.True(inside.IsStopped);
    }

    [Theory]
    [InlineData(ActivitySamplingResult.None)]
    [InlineData(ActivitySamplingResult.AllDataAndRecorded)]
    public async Task An_attempt_whose_context_was_stored_as_bytes_runs_in_the_same_trace_as_from_its_text(ActivitySamplingResult sampling)
    {
        using var listener = Listen(sampling);
        var traceId = ActivityTraceId.CreateRandom();
        var parentSpan = ActivitySpanId.CreateRandom();
        // As a store gives the headers back from the compact form: the worker reads the ids from the bytes.
        var stored = Conveyor.Backends.StoredHeaders.SerializeBinary(new Dictionary<string, string>
        {
            [ConveyorDiagnostics.TraceParentHeader] = $"00-{traceId}-{parentSpan}-01",
            [ConveyorDiagnostics.TraceStateHeader] = "vendor=1",
        });
        var message = Message(Conveyor.Backends.StoredHeaders.ParseUtf8(stored));
        Assert.IsType<Conveyor.Backends.TraceContextHeaders>(message.Headers);
        using var services = new ServiceCollection().BuildServiceProvider();
        Activity? inside = null;

        await new TaskTracingMiddleware().InvokeAsync(new TaskExecutionContext(message, 1, false, "worker-1", services, CancellationToken.None), _ =>
        {
            inside = Activity.Current;
            return ValueTask.CompletedTask;
        });

        Assert.NotNull(inside);
        Assert.Equal(traceId, inside.TraceId);
        Assert.Equal(parentSpan, inside.ParentSpanId);
        Assert.Equal($"00-{traceId}-{parentSpan}-01", inside.ParentId);
        Assert.Equal("vendor=1", inside.TraceStateString);
        Assert.Equal(sampling == ActivitySamplingResult.AllDataAndRecorded, inside.IsAllDataRequested);
        Assert.True(inside.IsStopped);
    }

    [Theory]
    [InlineData(true, false, true)]
    [InlineData(true, true, true)]
    [InlineData(false, false, false)]
    [InlineData(false, true, true)]
    public async Task An_enqueue_writes_an_unsampled_traces_context_only_when_told_to(bool propagateUnsampled, bool sampled, bool written)
    {
        var services = new ServiceCollection();
        services.AddConveyor(o => o.PropagateUnsampledTraces = propagateUnsampled).UseInMemoryBackend();
        await using var provider = services.BuildServiceProvider();
        var client = provider.GetRequiredService<ITaskClient>();
        using var caller = new Activity("request").SetIdFormat(ActivityIdFormat.W3C);
        caller.ActivityTraceFlags = sampled ? ActivityTraceFlags.Recorded : ActivityTraceFlags.None;
        caller.Start();

        var id = (await client.EnqueueAsync(new TaskRequest("trace.unit"))).Id;

        var stored = await provider.GetRequiredService<Conveyor.Backends.IConveyorBackend>().Store.GetAsync(id, CancellationToken.None);
        Assert.NotNull(stored);
        if (written)
        {
            Assert.Equal(caller.Id, stored.Headers![ConveyorDiagnostics.TraceParentHeader]);
        }
        else
        {
            Assert.Null(stored.Headers);
        }
    }

    [Fact]
    public async Task An_attempt_without_context_whose_root_the_sampler_drops_runs_in_no_activity()
    {
        // As the OpenTelemetry SDK answers for a root it drops: an activity to carry the new trace id, recording nothing.
        var started = 0;
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == ConveyorDiagnostics.Name,
            Sample = (ref ActivityCreationOptions<ActivityContext> options) =>
                options.Parent == default ? ActivitySamplingResult.PropagationData : ActivitySamplingResult.AllDataAndRecorded,
            // Other test classes' attempts run beside this one: only this class's task name counts.
            ActivityStarted = activity =>
            {
                if (activity.DisplayName == "process trace.unit")
                {
                    Interlocked.Increment(ref started);
                }
            },
        };
        ActivitySource.AddActivityListener(listener);
        using var services = new ServiceCollection().BuildServiceProvider();
        Activity? inside = null;

        await new TaskTracingMiddleware().InvokeAsync(new TaskExecutionContext(Message(), 1, false, "worker-1", services, CancellationToken.None), _ =>
        {
            inside = Activity.Current;
            return ValueTask.CompletedTask;
        });

        Assert.Null(inside);
        Assert.Equal(0, started);

        // With a context, the same sampler's answer gives a span, child of it.
        var traceId = ActivityTraceId.CreateRandom();
        var withContext = Message(new Dictionary<string, string> { [ConveyorDiagnostics.TraceParentHeader] = $"00-{traceId}-{ActivitySpanId.CreateRandom()}-01" });
        await new TaskTracingMiddleware().InvokeAsync(new TaskExecutionContext(withContext, 1, false, "worker-1", services, CancellationToken.None), _ =>
        {
            inside = Activity.Current;
            return ValueTask.CompletedTask;
        });
        Assert.Equal(traceId, inside!.TraceId);
        Assert.True(inside.Recorded);
        Assert.Equal(1, started);
    }
}
