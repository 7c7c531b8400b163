using System.Diagnostics;

namespace Conveyor;

/// <summary>
/// The names under which Conveyor reports telemetry through the .NET diagnostics APIs: one <see cref="System.Diagnostics.Metrics.Meter"/>
/// and one <see cref="System.Diagnostics.ActivitySource"/>, both named <c>Conveyor</c>. Any listener sees them — the
/// OpenTelemetry SDK (<c>AddMeter("Conveyor")</c>, <c>AddSource("Conveyor")</c>), <c>dotnet-counters</c>, a test's
/// <see cref="ActivityListener"/>; with none, instruments and spans cost a check each (docs/observability.md).
/// </summary>
public static class ConveyorDiagnostics
{
    /// <summary>The meter's and the activity source's name: <c>Conveyor</c>.</summary>
    public const string Name = "Conveyor";

    /// <summary>The message headers that carry W3C trace context from an enqueue to each attempt: <c>traceparent</c>.</summary>
    public const string TraceParentHeader = "traceparent";

    /// <summary>The W3C <c>tracestate</c> header, carried beside <see cref="TraceParentHeader"/> when the enqueue had one.</summary>
    public const string TraceStateHeader = "tracestate";

    internal static readonly string Version =
        typeof(ConveyorDiagnostics).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion ?? "0.0.0";

    /// <summary>Spans of enqueues (<c>enqueue {task}</c>, kind Producer) and of attempts (<c>process {task}</c>, kind
    /// Consumer, child of the enqueue through the message's <c>traceparent</c> header).</summary>
    public static ActivitySource ActivitySource { get; } = new(Name, Version);
}

/// <summary>Metric names as instruments report them (OpenTelemetry names; Prometheus shows dots as underscores, adds
/// <c>_total</c> to counters and the unit to seconds: <c>conveyor_tasks_enqueued_total</c>,
/// <c>conveyor_task_duration_seconds</c>).</summary>
public static class ConveyorMetricNames
{
    /// <summary>Counter of tasks stored by enqueues (and queued again by a manual retry); tags <c>task</c>, <c>queue</c>.</summary>
    public const string TasksEnqueued = "conveyor.tasks.enqueued";
    /// <summary>Counter of attempts whose handler started; tags <c>task</c>, <c>queue</c>.</summary>
    public const string TasksStarted = "conveyor.tasks.started";
    /// <summary>Counter of attempts that succeeded; tags <c>task</c>, <c>queue</c>.</summary>
    public const string TasksSucceeded = "conveyor.tasks.succeeded";
    /// <summary>Counter of attempts that failed (retried or dead, snoozes excepted); tags <c>task</c>, <c>queue</c>.</summary>
    public const string TasksFailed = "conveyor.tasks.failed";
    /// <summary>Counter of failed attempts whose task will run again; tags <c>task</c>, <c>queue</c>.</summary>
    public const string TasksRetried = "conveyor.tasks.retried";
    /// <summary>Counter of tasks that went dead (out of attempts, or a permanent failure); tags <c>task</c>, <c>queue</c>.</summary>
    public const string TasksDead = "conveyor.tasks.dead";
    /// <summary>Counter of tasks cancelled; tags <c>task</c>, <c>queue</c>.</summary>
    public const string TasksCancelled = "conveyor.tasks.cancelled";
    /// <summary>Counter of tasks that expired before they started; tags <c>task</c>, <c>queue</c>.</summary>
    public const string TasksExpired = "conveyor.tasks.expired";
    /// <summary>Histogram of attempts' run time in seconds; tags <c>task</c>, <c>queue</c>, <c>outcome</c> (succeeded, failed,
    /// cancelled).</summary>
    public const string TaskDuration = "conveyor.task.duration";
    /// <summary>Histogram of the time from a task being ready (enqueued, or due) to its handler's start, in seconds; tags
    /// <c>task</c>, <c>queue</c>.</summary>
    public const string TaskQueueWait = "conveyor.task.queue_wait";
    /// <summary>Gauge of tasks per queue and state, read from the backend; tags <c>queue</c>, <c>state</c>.</summary>
    public const string QueueDepth = "conveyor.queue.depth";
    /// <summary>Gauge of the age in seconds of the oldest task ready in each queue (0 when none); tag <c>queue</c>.</summary>
    public const string QueueOldestAge = "conveyor.queue.oldest_age";
    /// <summary>Gauge of whether each queue is paused (1) or not (0); tag <c>queue</c>.</summary>
    public const string QueuePaused = "conveyor.queue.paused";
    /// <summary>Gauge of workers whose heartbeat is recent, over every process on the backend.</summary>
    public const string WorkersAlive = "conveyor.workers.alive";
    /// <summary>Counter of leases that ran out and were taken back by the reaper (the leader's); no tags.</summary>
    public const string LeasesExpired = "conveyor.leases.expired";
    /// <summary>Histogram of backend calls' round trips in seconds; tag <c>operation</c> (enqueue, fetch, complete, extend).</summary>
    public const string BackendDuration = "conveyor.backend.duration";
}
