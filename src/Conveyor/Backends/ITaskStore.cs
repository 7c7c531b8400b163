namespace Conveyor.Backends;

/// <summary>A filter and page of the task list.</summary>
public sealed record TaskQuery
{
    /// <summary>Only tasks in this state.</summary>
    public TaskState? State { get; init; }
    /// <summary>Only tasks with this name.</summary>
    public string? Task { get; init; }
    /// <summary>Only tasks in this queue.</summary>
    public string? Queue { get; init; }
    /// <summary>Opaque cursor from the previous page's <see cref="TaskPage.NextCursor"/>.</summary>
    public string? Cursor { get; init; }
    /// <summary>Page size, 1 to 1,000. Default 100.</summary>
    public int Limit { get; init; } = 100;
}

/// <summary>One page of tasks, newest first.</summary>
/// <param name="Items">The tasks.</param>
/// <param name="NextCursor">Cursor of the next page, or null at the end.</param>
public sealed record TaskPage(IReadOnlyList<TaskRecord> Items, string? NextCursor);

/// <summary>Tasks of one name in one queue and one waiting state (<see cref="ITaskStore.CountWaitingByTaskAsync"/>).</summary>
/// <param name="Queue">Queue.</param>
/// <param name="Task">Task name.</param>
/// <param name="State">A waiting state: scheduled, queued, retrying or pending.</param>
/// <param name="Count">How many.</param>
public sealed record WaitingTaskCount(string Queue, string Task, TaskState State, long Count);

/// <summary>Waiting tasks counted per queue, name and state.</summary>
/// <param name="Counts">The counts; none with <see cref="WaitingTaskCount.Count"/> 0.</param>
/// <param name="Complete">False when the store counted only the first <see cref="ITaskStore.MaxWaitingCounted"/> waiting
/// tasks (a store that cannot group them, which pages through them instead): the counts are then lower bounds.</param>
public sealed record WaitingTaskCounts(IReadOnlyList<WaitingTaskCount> Counts, bool Complete);

/// <summary>
/// The store role: task state, results, errors and history; queries for the API and dashboard;
/// retention of finished tasks.
/// </summary>
public interface ITaskStore
{
    /// <summary>One task, or null when unknown.</summary>
    Task<TaskRecord?> GetAsync(Guid taskId, CancellationToken cancellationToken);

    /// <summary>Tasks matching a filter, newest first, one page at a time. A store may end a page early, with fewer tasks
    /// than the limit (none, even) and a cursor, when it has looked at a bounded number of rows (SQL stores do so for a
    /// task or queue filter, which no index serves); following the cursor goes on from there, and no match is skipped.</summary>
    Task<TaskPage> ListAsync(TaskQuery query, CancellationToken cancellationToken);

    /// <summary>The state of each task of <paramref name="taskIds"/> that exists (unknown ids are left out): one round
    /// trip where the store can, for callers that check many tasks at once (the RabbitMQ backend's sweep of stale
    /// deliveries). The default asks <see cref="GetAsync"/> for each.</summary>
    async Task<IReadOnlyDictionary<Guid, TaskState>> GetStatesAsync(IReadOnlyCollection<Guid> taskIds, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(taskIds);
        var states = new Dictionary<Guid, TaskState>(taskIds.Count);
        foreach (var id in taskIds)
        {
            if (await GetAsync(id, cancellationToken).ConfigureAwait(false) is { } record)
            {
                states[id] = record.State;
            }
        }
        return states;
    }

    /// <summary>Finished tasks (succeeded, cancelled, expired) that <see cref="GetQueuesAsync(CancellationToken)"/> reads,
    /// at most, to count each of those states: 50,000, as many as a task list filtered by name looks at
    /// (docs/dashboard.md#counts-over-a-large-store).</summary>
    const int FinishedCountLimit = 50_000;

    /// <summary>Every known queue with its count per state and whether it is paused: <see cref="GetQueuesAsync(int, CancellationToken)"/>
    /// with <see cref="FinishedCountLimit"/>.</summary>
    Task<IReadOnlyList<QueueStats>> GetQueuesAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Every known queue with its count per state and whether it is paused. The states a queue's depth is made of
    /// (pending, scheduled, queued, running, retrying, dead) are counted exactly. The finished states that grow until
    /// retention (succeeded, cancelled, expired) may be counted over about <paramref name="finishedCountLimit"/> of their
    /// tasks only: a store that stops there names the state in <see cref="QueueStats.LowerBounds"/> of every queue, and
    /// its counts are then at least that many, never more than there are. <see cref="int.MaxValue"/> asks for every count
    /// exactly, whatever it costs (SQL stores then group the whole table, as they did before the limit). The default
    /// ignores the limit and counts everything, as a store that counts cheaply (Redis keeps a sorted set per queue and
    /// state) does.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="finishedCountLimit"/> is below 1.</exception>
    Task<IReadOnlyList<QueueStats>> GetQueuesAsync(int finishedCountLimit, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(finishedCountLimit, 1);
        return GetQueuesAsync(cancellationToken);
    }

    /// <summary>For each queue that has queued tasks, when the one that has waited longest became ready (its ETA or retry
    /// time, else its enqueue): the age gauge of metrics reads it, at most once per
    /// <see cref="ConveyorOptions.MetricsRefreshInterval"/>. Queues without queued tasks are left out. The default
    /// reports none (a store that cannot tell).</summary>
    Task<IReadOnlyDictionary<string, DateTimeOffset>> GetOldestReadyAsync(CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlyDictionary<string, DateTimeOffset>>(new Dictionary<string, DateTimeOffset>(StringComparer.Ordinal));

    /// <summary>Most waiting tasks the default <see cref="CountWaitingByTaskAsync"/> reads: 10,000.</summary>
    const int MaxWaitingCounted = 10_000;

    /// <summary>The tasks that wait (scheduled, queued, retrying, pending) counted per queue, task name and state: what
    /// <c>GET /api/v1/tasks/waiting-for-handler</c> and <c>conveyor info</c> compare with the names live workers declare.
    /// SQL stores group them in one statement; the default pages through <see cref="ListAsync"/> and stops after
    /// <see cref="MaxWaitingCounted"/> tasks (<see cref="WaitingTaskCounts.Complete"/> false).</summary>
    async Task<WaitingTaskCounts> CountWaitingByTaskAsync(CancellationToken cancellationToken)
    {
        var counts = new Dictionary<(string Queue, string Task, TaskState State), long>();
        var read = 0;
        foreach (var state in (TaskState[])[TaskState.Queued, TaskState.Retrying, TaskState.Scheduled, TaskState.Pending])
        {
            string? cursor = null;
            do
            {
                if (read >= MaxWaitingCounted)
                {
                    return new WaitingTaskCounts(ToList(counts), Complete: false);
                }
                var page = await ListAsync(new TaskQuery { State = state, Cursor = cursor, Limit = 1000 }, cancellationToken).ConfigureAwait(false);
                foreach (var task in page.Items)
                {
                    var key = (task.Queue, task.Task, state);
                    counts[key] = counts.GetValueOrDefault(key) + 1;
                }
                read += page.Items.Count;
                cursor = page.NextCursor;
            }
            while (cursor is not null);
        }
        return new WaitingTaskCounts(ToList(counts), Complete: true);

        static List<WaitingTaskCount> ToList(Dictionary<(string Queue, string Task, TaskState State), long> counts) =>
            counts.Select(c => new WaitingTaskCount(c.Key.Queue, c.Key.Task, c.Key.State, c.Value)).ToList();
    }

    /// <summary>Deletes up to <paramref name="maxCount"/> tasks that reached a terminal state before
    /// <paramref name="finishedBefore"/>. Returns how many.</summary>
    Task<int> PurgeFinishedAsync(DateTimeOffset finishedBefore, int maxCount, CancellationToken cancellationToken);

    /// <summary>Deletes the tasks of <paramref name="taskIds"/> that are in <paramref name="state"/>, a terminal state,
    /// with their idempotency keys; leaves the others (unknown, or in another state by now: a task retried meanwhile is
    /// never pulled from under its worker). One bounded statement or script per call: callers pass bounded batches (a
    /// bulk purge passes one page, <see cref="ConveyorOptions.BulkBatchSize"/>, 500 by default). Returns how many.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="state"/> is not terminal.</exception>
    Task<int> DeleteAsync(IReadOnlyCollection<Guid> taskIds, TaskState state, CancellationToken cancellationToken);
}

/// <summary>
/// The coordination role: worker heartbeats and leader election (rate and concurrency counters: <see cref="ILimitStore"/>).
/// </summary>
public interface ICoordinationBackend
{
    /// <summary>Records a worker's heartbeat (insert or update).</summary>
    Task HeartbeatAsync(WorkerInfo worker, CancellationToken cancellationToken);

    /// <summary>Removes a worker that stopped.</summary>
    Task RemoveWorkerAsync(string workerId, CancellationToken cancellationToken);

    /// <summary>Workers whose last heartbeat is newer than <paramref name="seenSince"/>.</summary>
    Task<IReadOnlyList<WorkerInfo>> ListWorkersAsync(DateTimeOffset seenSince, CancellationToken cancellationToken);

    /// <summary>Takes or renews the named leadership for <paramref name="ttl"/>; true while <paramref name="owner"/> holds it.</summary>
    Task<bool> TryAcquireLeadershipAsync(string name, string owner, TimeSpan ttl, CancellationToken cancellationToken);

    /// <summary>Gives up the named leadership if <paramref name="owner"/> holds it.</summary>
    Task ReleaseLeadershipAsync(string name, string owner, CancellationToken cancellationToken);
}

/// <summary>The result of a backend's health check.</summary>
/// <param name="Healthy">Whether the engine answered.</param>
/// <param name="Description">What was checked, or what failed.</param>
/// <param name="Warnings">Settings that work but put tasks at risk.</param>
public sealed record BackendHealth(bool Healthy, string Description, IReadOnlyList<string>? Warnings = null)
{
    /// <summary>How far the engine's clock is ahead of this process's (negative: behind), measured with the check's
    /// round trip taken off; null where the engine has no clock of its own (SQLite). Lease expiry, ETAs and retry times
    /// are written with the processes' clocks, so processes whose skews differ by more than a lease's margin can take
    /// a lease back early.</summary>
    public TimeSpan? ClockSkew { get; init; }

    /// <summary>Skew beyond which the check warns: 1 s.</summary>
    public static TimeSpan SkewWarning { get; } = TimeSpan.FromSeconds(1);

    /// <summary>The skew between the engine's clock, read at <paramref name="engineTime"/>, and this process's clock read
    /// just before (<paramref name="before"/>) and after (<paramref name="after"/>) the call; with a warning added to
    /// <paramref name="warnings"/> when it passes <see cref="SkewWarning"/>.</summary>
    public static TimeSpan MeasureSkew(DateTimeOffset before, DateTimeOffset engineTime, DateTimeOffset after, string engine, List<string> warnings)
    {
        ArgumentNullException.ThrowIfNull(warnings);
        var skew = engineTime - (before + ((after - before) / 2));
        if (skew.Duration() > SkewWarning)
        {
            warnings.Add($"this process's clock differs from {engine}'s by {skew.TotalSeconds:0.###} s: lease expiry, ETAs and retries use the " +
                "processes' clocks, so keep every host's clock in sync (NTP)");
        }
        return skew;
    }
}

/// <summary>A configured backend: its roles, migrations and health check.</summary>
public interface IConveyorBackend
{
    /// <summary>Short name: <c>sqlite</c>, <c>postgres</c>, <c>redis</c>, <c>rabbitmq</c>.</summary>
    string Name { get; }
    /// <summary>The queue role.</summary>
    IQueueBackend Queue { get; }
    /// <summary>The store role.</summary>
    ITaskStore Store { get; }
    /// <summary>The coordination role.</summary>
    ICoordinationBackend Coordination { get; }
    /// <summary>The schedule state of the coordination role: periodic schedules and their last fires.</summary>
    IScheduleStore Schedules { get; }
    /// <summary>The unique-key claims of the coordination role (<see cref="TaskMessage.UniqueKey"/>).</summary>
    IUniqueKeyStore UniqueKeys { get; }
    /// <summary>The notifier role: publish/subscribe on named channels across the processes sharing this backend.</summary>
    INotifier Notifier { get; }
    /// <summary>The limit counters (a coordination sub-role): rate-limit reservations and concurrency slots shared by every
    /// process on this backend (docs/limits.md).</summary>
    ILimitStore Limits { get; }
    /// <summary>Workflows (<see cref="IWorkflowStore"/>), or null where this backend does not store them yet (Redis:
    /// docs/workflows.md); the workflow client then refuses to start one.</summary>
    IWorkflowStore? Workflows => null;
    /// <summary>The API keys of the store role (<see cref="IApiKeyStore"/>), or null where this backend keeps none (a
    /// test double); the server then accepts only the keys in its configuration.</summary>
    IApiKeyStore? ApiKeys => null;
    /// <summary>Compare-and-set rewrites of stored payloads (<see cref="IPayloadStore"/>), or null where this backend
    /// offers none (a test double); <c>conveyor keys rotate-data</c> then refuses to run.</summary>
    IPayloadStore? Payloads => null;
    /// <summary>The audit log of the store role (<see cref="IAuditLog"/>), or null where this backend keeps none (a test
    /// double); nothing is then recorded.</summary>
    IAuditLog? Audit => null;
    /// <summary>The dashboard's users of the store role (<see cref="IUserStore"/>), or null where this backend keeps none
    /// (a test double); password sign-in is then unavailable.</summary>
    IUserStore? Users => null;
    /// <summary>What this backend offers.</summary>
    BackendCapabilities Capabilities { get; }
    /// <summary>Creates or upgrades the schema; safe to run concurrently and repeatedly.</summary>
    Task MigrateAsync(CancellationToken cancellationToken);
    /// <summary>Checks that the engine answers.</summary>
    Task<BackendHealth> CheckHealthAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Whether <paramref name="exception"/>, thrown by one of this backend's calls, means that a server it needs cannot
    /// be reached (it is down, restarting, refusing connections, or timing out): an outage to wait out and try again,
    /// not a bug or a bad request. Returns the short name of the backend that is unavailable (for a queue paired with a
    /// store, the one that failed), or null. Looks at <paramref name="exception"/> only; <see cref="BackendOutage.Find"/>
    /// also looks at its inner exceptions. The default recognises <see cref="BackendUnavailableException"/>.
    /// </summary>
    string? GetUnavailableBackend(Exception exception) => (exception as BackendUnavailableException)?.Backend;
}
