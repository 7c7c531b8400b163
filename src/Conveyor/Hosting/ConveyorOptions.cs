using Conveyor.Backends;

namespace Conveyor;

/// <summary>Settings of the worker and scheduler, bound from the <c>Conveyor</c> configuration section.</summary>
public sealed class ConveyorOptions
{
    /// <summary>Whether this process runs a worker. Default true.</summary>
    public bool RunWorker { get; set; } = true;

    /// <summary>Whether this process takes part in leader election to run the scheduler
    /// (ETA promotion, lease reaper, retention). Default true.</summary>
    public bool RunScheduler { get; set; } = true;

    /// <summary>Whether the logging middleware logs each attempt (start and success at Debug, failures at Warning).
    /// Default true. When false, failed attempts are not logged by Conveyor.</summary>
    public bool LogTasks { get; set; } = true;

    /// <summary>Most tasks one step of a bulk retry or purge (<see cref="ITaskClient.RetryManyAsync"/>,
    /// <see cref="ITaskClient.PurgeAsync"/>) reads and changes: each step is one page of the task list and its own backend
    /// calls, never one transaction over every match. 1 to 1,000 (the largest page of the task list); default 500.</summary>
    public int BulkBatchSize { get; set; } = 500;

    /// <summary>Most steps one workflow may have (<see cref="Conveyor.Workflows.IWorkflowClient"/>, <c>POST /api/v1/workflows</c>):
    /// a larger one is refused whole, nothing stored. 1 to 100,000; default 10,000.</summary>
    public int MaxWorkflowSteps { get; set; } = 10_000;

    /// <summary>Whether attempts run inside a span of the <c>Conveyor</c> activity source (<c>process {task}</c>, child of the
    /// enqueue through the message's <c>traceparent</c> header) while a listener samples it, and inside an activity that
    /// carries the message's trace context otherwise, so that logs and the tasks a handler enqueues stay in its trace.
    /// Default true.</summary>
    public bool TraceTasks { get; set; } = true;

    /// <summary>Whether an enqueue inside a trace that is not sampled (an activity that only propagates its context, as the
    /// OpenTelemetry SDK starts for every span its sampler drops) still writes that context into the messages, so that the
    /// attempts' log lines carry the trace id and a parent-based sampler drops their spans too. False writes the context of
    /// sampled traces only: a message of an unsampled trace then costs no header, and each of its attempts is a root that
    /// the sampler decides on afresh, run in no activity when dropped (docs/observability.md, Sampling and Cost).
    /// Default true. False is recommended, with ratio sampling, on a server that runs thousands of short tasks a second;
    /// not without a tracer, under which every context is unsampled, so none would be written.</summary>
    public bool PropagateUnsampledTraces { get; set; } = true;

    /// <summary>How often, at most, the queue and worker gauges (<see cref="ConveyorMetricNames.QueueDepth"/>, …) read the
    /// backend: collections within this time of the last read report its counts. Default 5 s.</summary>
    public TimeSpan MetricsRefreshInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Worker settings.</summary>
    public WorkerOptions Worker { get; set; } = new();

    /// <summary>Scheduler settings.</summary>
    public SchedulerOptions Scheduler { get; set; } = new();

    /// <summary>Audit log settings (<c>Conveyor:Audit</c>).</summary>
    public AuditOptions Audit { get; set; } = new();

    /// <summary>Workflow settings (<c>Conveyor:Workflows</c>).</summary>
    public WorkflowOptions Workflows { get; set; } = new();

    /// <summary>Periodic schedules declared in configuration (<c>Conveyor:Schedules:{name}:Cron</c>, …), by name. The
    /// leader writes them to the backend at the start of each term; docs/scheduling.md.</summary>
    public IDictionary<string, Scheduling.ScheduleSettings> Schedules { get; } = new Dictionary<string, Scheduling.ScheduleSettings>(StringComparer.Ordinal);

    /// <summary>Rate and concurrency limits on tasks and queues, across every worker (<c>Conveyor:Limits:0:Task</c>,
    /// <c>…:Rate</c>, <c>…:Concurrency</c>, …; docs/limits.md). Each overrides what the task's registration set. Default none.</summary>
    public IList<LimitRule> Limits { get; } = [];
}

/// <summary>Settings of a worker.</summary>
public sealed class WorkerOptions
{
    /// <summary>This worker's id. Default null: generated (host, process id, random suffix). A supervisor sets it for
    /// each child it runs, so that it can end a dead child's leases at once.</summary>
    public string? Id { get; set; }

    /// <summary>Queues to consume, in the form <c>name</c> or <c>name:weight</c>. Default <c>default</c>.</summary>
    public IList<string> Queues { get; } = [];

    /// <summary>When true, queues are drained in the order listed (strict priority); otherwise by weight. Default false.</summary>
    public bool StrictQueueOrder { get; set; }

    /// <summary>Handlers that may run at once. Default 16.</summary>
    public int Concurrency { get; set; } = 16;

    /// <summary>Leases held at once, running and waiting; also the largest fetch. Default null: automatic, sized to the
    /// work between the concurrency and <see cref="EffectivePrefetch"/> (enough to keep the handlers busy through a
    /// fetch's round trip: deep for short tasks, about one per handler for long ones). Set it to fix the number.</summary>
    public int? Prefetch { get; set; }

    /// <summary>Fetches in flight at once. Default 2: while one fetch makes its round trip, the next gathers the slots
    /// freed meanwhile, so a fast queue does not wait on the backend's latency. A deep buffer is refilled by halves (a
    /// fetch waits for more freed slots while the leases waiting to start cover its round trip), not a lease at a time.
    /// 1 fetches strictly one batch at a time.</summary>
    public int FetchConcurrency { get; set; } = 2;

    /// <summary>Lease length; a worker that misses heartbeats for this long loses its tasks to others. Default 30 s.</summary>
    public TimeSpan LeaseDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How often leases are extended and the worker reports itself. Default 10 s.</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long an idle worker waits for a ready notification before it looks for work again: the fallback
    /// poll, for notifications lost on a broken connection or a backend that cannot notify other processes. Default 5 s.</summary>
    public TimeSpan FetchWait { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How long shutdown waits for running handlers before cancelling them. Default 30 s.</summary>
    public TimeSpan ShutdownTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Snoozes in a row (<see cref="SnoozeTaskException"/>) after which a task goes dead with
    /// <c>Conveyor.SnoozeLimit</c>, for tasks whose registration sets no <see cref="TaskDefaults.MaxSnoozes"/>. 0 to
    /// 100,000; default 100.</summary>
    public int MaxSnoozes { get; set; } = 100;

    /// <summary>Most completions written in one backend call. Default 512.</summary>
    public int CompletionBatchSize { get; set; } = 512;

    /// <summary>Worker processes a supervisor runs (<see cref="ConveyorSupervisor"/>), each with <see cref="Concurrency"/>
    /// handlers. Default 0: no supervisor, the worker runs in this process.</summary>
    public int Processes { get; set; }

    /// <summary>A worker process that has finished this many attempts stops fetching, finishes what it runs and exits
    /// (<see cref="WorkerExitCodes.Recycled"/>) to be replaced, as Celery's <c>--max-tasks-per-child</c>. Default null: never.</summary>
    public long? MaxTasksPerChild { get; set; }

    /// <summary>A worker process whose resident memory passes this size is recycled as by <see cref="MaxTasksPerChild"/>:
    /// <c>512MB</c>, <c>1GB</c>, <c>800KB</c>, or a plain number of kilobytes (<c>1048576</c>) as Celery's
    /// <c>--max-memory-per-child</c> takes it (<see cref="MemorySize"/>). Default null: never.</summary>
    public string? MaxMemoryPerChild { get; set; }

    /// <summary>With recycling on (<see cref="MaxTasksPerChild"/> or <see cref="MaxMemoryPerChild"/>), the supervisor keeps
    /// one more worker process started and waiting, which takes the place of the next child that recycles or exits: a
    /// recycle then costs the spare's first fetch rather than a process's start. It fetches nothing and holds no task lease
    /// while it waits, and costs a child's idle memory. Default true; no spare without recycling.</summary>
    public bool SpareProcess { get; set; } = true;

    /// <summary>Soft time limit of a task that sets none itself (<see cref="TaskMessage.Timeout"/>): its handler's token is
    /// cancelled and the attempt fails with a timeout. Default null: none.</summary>
    public TimeSpan? SoftTimeLimit { get; set; }

    /// <summary>Hard time limit of every task: a handler still running this long after it started ends its worker process
    /// (<see cref="WorkerExitCodes.HardTimeLimit"/>); the attempt is recorded failed (<c>Conveyor.HardTimeLimit</c>, retried by
    /// its policy) and the process's other tasks are handed back at once. Default null: none.</summary>
    public TimeSpan? TimeLimit { get; set; }

    /// <summary>The most leases held at once: <see cref="Prefetch"/> when set, else the automatic prefetch's ceiling,
    /// 16 × concurrency, at least 256.</summary>
    public int EffectivePrefetch => Prefetch ?? Math.Max(256, Concurrency * 16);

    /// <summary>The most a queue's weight may be: 100.</summary>
    public const int MaxQueueWeight = 100;

    /// <summary>The queues as weights; <c>default</c> when none is listed.</summary>
    /// <exception cref="FormatException">An entry is not <c>name</c> or <c>name:weight</c> with a valid queue name and a
    /// weight from 1 to <see cref="MaxQueueWeight"/>; the message names the entry and what is accepted.</exception>
    public IReadOnlyList<QueueWeight> ParseQueues()
    {
        if (Queues.Count == 0)
        {
            return [new QueueWeight(QueueNames.Default)];
        }
        var result = new List<QueueWeight>();
        foreach (var entry in Queues)
        {
            foreach (var part in entry.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                result.Add(ParseQueue(part));
            }
        }
        if (result.Count == 0)
        {
            throw new FormatException("Conveyor:Worker:Queues lists no queue: give one or more 'name' or 'name:weight', comma-separated (default 'default').");
        }
        var duplicate = result.GroupBy(q => q.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
        {
            throw new FormatException($"Conveyor:Worker:Queues lists queue '{duplicate.Key}' more than once.");
        }
        return result;
    }

    private static QueueWeight ParseQueue(string part)
    {
        const string Accepted = "each entry is 'name' or 'name:weight', a name being 1 to 100 letters, digits, '.', '-' or '_' (never ':') and a weight a whole number from 1 to 100";
        var colon = part.IndexOf(':', StringComparison.Ordinal);
        var name = colon < 0 ? part : part[..colon];
        if (!QueueNames.IsValid(name))
        {
            throw new FormatException($"Conveyor:Worker:Queues: '{part}' does not name a valid queue: {Accepted}.");
        }
        if (colon < 0)
        {
            return new QueueWeight(name);
        }
        var weightText = part[(colon + 1)..];
        if (!int.TryParse(weightText, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var weight)
            || weight < 1 || weight > MaxQueueWeight)
        {
            throw new FormatException($"Conveyor:Worker:Queues: '{part}' has weight '{weightText}' (queue '{name}'): {Accepted}.");
        }
        return new QueueWeight(name, weight);
    }
}

/// <summary>Settings of the leader election and the leader-only maintenance services (ETA promotion, the lease reaper,
/// retention), bound from <c>Conveyor:Scheduler</c>.</summary>
public sealed class SchedulerOptions
{
    /// <summary>Longest sleep between ETA promotions; the next due time wakes it sooner. Default 1 s.</summary>
    public TimeSpan PromotionInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>How often expired leases are requeued. Default 5 s.</summary>
    public TimeSpan ReaperInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How long finished tasks are kept. Default 7 days.</summary>
    public TimeSpan Retention { get; set; } = TimeSpan.FromDays(7);

    /// <summary>How often retention looks for finished tasks past <see cref="Retention"/> when the last pass found fewer
    /// than a batch. Default 1 min.</summary>
    public TimeSpan RetentionInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Most tasks deleted in one backend call. Default 5,000.</summary>
    public int RetentionBatchSize { get; set; } = 5000;

    /// <summary>Longest a retention pass goes on deleting full batches before it pauses (200 ms) and starts the next.
    /// Default 10 s.</summary>
    public TimeSpan RetentionPassLimit { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Leader lease length. Default 15 s.</summary>
    public TimeSpan LeaderLease { get; set; } = TimeSpan.FromSeconds(15);
}

/// <summary>Wakes the in-process scheduler when a task with an ETA is enqueued, so it need not poll.</summary>
public sealed class SchedulerSignal
{
    private volatile TaskCompletionSource _next = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Wakes waiters.</summary>
    public void Notify() => Interlocked.Exchange(ref _next, new(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();

    /// <summary>Completes at the next <see cref="Notify"/>.</summary>
    public Task WaitAsync() => _next.Task;
}

/// <summary>Settings of the audit log (docs/security.md "Audit log"), bound from <c>Conveyor:Audit</c>.</summary>
public sealed class AuditOptions
{
    /// <summary>How long audit entries are kept; retention deletes older ones. Default 90 days.</summary>
    public TimeSpan Retention { get; set; } = TimeSpan.FromDays(90);
}

/// <summary>Settings of workflows (docs/workflows.md), bound from <c>Conveyor:Workflows</c>.</summary>
public sealed class WorkflowOptions
{
    /// <summary>How long a finished workflow (succeeded, failed or cancelled) is kept with its steps; the leader's retention
    /// pass deletes older ones, never a running one. Default 7 days, as finished tasks (<see cref="SchedulerOptions.Retention"/>).</summary>
    public TimeSpan Retention { get; set; } = TimeSpan.FromDays(7);
}
