using System.Collections.Concurrent;
using System.Text.Json;
using Conveyor.Backends;
using Conveyor.Sql;
using Npgsql;

namespace Conveyor.Postgres;

public sealed partial class PostgresBackend
{
    // Rows go in array order (WITH ORDINALITY … ORDER BY), so seq, and with it FIFO, follows the batch.
    private static string InsertSql(string tasks) => $"""
        INSERT INTO {tasks} (id, task, queue, state, priority, args, max_attempts, retry_base_ms, retry_max_ms, retry_jitter,
            timeout_ms, not_before, expires_at, created_at, idempotency_key, headers, history)
        SELECT u.id, u.task, u.queue, u.state, u.priority, u.args, u.max, u.base, u.maxdelay, u.jitter,
            u.timeout, u.nb, u.exp, u.created, u.key, u.headers, u.history
        FROM unnest(@id::uuid[], @task::text[], @queue::text[], @state::smallint[], @priority::int[], @args::text[], @max::int[],
            @base::bigint[], @maxdelay::bigint[], @jitter::float8[], @timeout::bigint[], @nb::bigint[], @exp::bigint[],
            @created::bigint[], @key::text[], @headers::text[], @history::text[])
            WITH ORDINALITY AS u(id, task, queue, state, priority, args, max, base, maxdelay, jitter, timeout, nb, exp, created, key, headers, history, ord)
        ORDER BY u.ord
        ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING id
        """;

    // The condition of the statements that take leased rows by id (completions, starts, extensions, hand-backs). Written
    // `state + 0` so that it cannot match the partial index tasks_leased (WHERE state = 2): once ANALYZE has seen a table
    // of queued tasks, the planner estimates one leased row and joins the ids to a scan of that index, which the drain
    // fills with dead entries (every task passes through it) — 3,600 tasks/s instead of 20,000, and deadlocks, as the
    // hash join locks rows in the index's order, not the ids'. Without it the only plan is a nested loop over the ids
    // (sorted by the caller) and the tasks_id index: one lookup each, rows locked in id order. PostgresPlanTests checks it.
    internal const string HeldByLease = $"t.state + 0 = {StoredStates.Running}";

    private const string MessageColumns =
        "t.seq, t.id, t.task, t.queue, t.priority, t.args, t.not_before, t.expires_at, t.attempt, t.max_attempts, t.retry_base_ms, t.retry_max_ms, t.retry_jitter, t.timeout_ms, t.idempotency_key, t.headers, t.created_at, t.redelivered, t.lapses";

    // The lease is committed without waiting for its WAL flush (synchronous_commit off for this transaction only;
    // fsync stays on): a lease lost in a PostgreSQL crash leaves its task queued, to run again, which is what a lost
    // worker does anyway. It cannot outlive a durable completion: that later commit flushes the WAL before it.
    // The uncorrelated subquery is an InitPlan, run once per statement.
    private static string FetchSql(string tasks, string queues) => $"""
        WITH c AS (
            SELECT seq FROM {tasks}
            WHERE queue = @queue AND state = {StoredStates.Queued} AND NOT EXISTS (SELECT 1 FROM {queues} WHERE name = @queue AND paused)
            ORDER BY priority DESC, seq
            LIMIT @limit
            FOR UPDATE SKIP LOCKED)
        UPDATE {tasks} t SET state = {StoredStates.Running}, attempt = t.attempt + 1, lease_owner = @owner, lease_token = @token,
            lease_expires = @expires, lease_started = false, started_at = @now, history = t.history || '|{StoredStates.Running}:' || @now
        FROM c WHERE t.seq = c.seq AND (SELECT set_config('synchronous_commit', 'off', true)) = 'off'
        RETURNING {MessageColumns}
        """;

    // A retry of a task whose cancel was asked cancels it instead: the cancel reached the backend
    // before the worker heard of it, and must not be lost. (SET expressions read the old row.) A step's retry that the
    // retried steps of its workflow hold back (RetryHeldBack) makes it pending instead.
    internal static string CompleteSql(string tasks, string workflows, string edges) => $"""
        UPDATE {tasks} t SET state = {StateAfterCompletion(tasks, workflows, edges)},
            result = u.result, error = coalesce(u.error, t.error),
            errors = CASE WHEN u.entry IS NULL THEN t.errors ELSE coalesce(t.errors || chr(10), '') || u.entry END,
            not_before = CASE WHEN {RetryHeldBack(tasks, workflows, edges)} THEN NULL ELSE u.nb END,
            finished_at = CASE WHEN u.state = {StoredStates.Retrying} AND t.cancel_requested THEN u.at ELSE u.finished END,
            attempt = t.attempt - u.unspent, headers = CASE WHEN u.set_headers THEN u.headers ELSE t.headers END,
            lease_token = NULL, lease_expires = NULL, redelivered = false, cancel_requested = false,
            history = t.history || '|' || ({StateAfterCompletion(tasks, workflows, edges)}) || ':' || u.at,
            pending_steps = CASE WHEN u.state = {StoredStates.Succeeded} AND t.workflow_id IS NOT NULL THEN -1
                WHEN t.workflow_id IS NOT NULL AND t.pending_steps > 0 AND u.state = {StoredStates.Retrying}
                THEN t.pending_steps - {SucceedingHere(tasks, edges)} ELSE t.pending_steps END
        FROM unnest(@id::uuid[], @token::bigint[], @state::int[], @result::text[], @error::text[], @entry::text[],
            @nb::bigint[], @finished::bigint[], @at::bigint[], @unspent::int[], @set_headers::boolean[], @headers::text[])
            AS u(id, token, state, result, error, entry, nb, finished, at, unspent, set_headers, headers)
        WHERE t.id = u.id AND t.lease_token = u.token AND {HeldByLease}
        """;

    private static string StateAfterCompletion(string tasks, string workflows, string edges) =>
        $"CASE WHEN u.state = {StoredStates.Retrying} AND t.cancel_requested THEN {StoredStates.Cancelled} WHEN {RetryHeldBack(tasks, workflows, edges)} THEN {StoredStates.Pending} ELSE u.state END";

    // A step whose attempt asks for a retry while the retried steps of its workflow hold it back goes back to pending, as
    // at its lease's end (LeaseHeldBack): its retry's wait dropped, the attempt it ran kept; CompleteStepsSql counts it
    // no longer active. Held back: its count (CountedStep) is above 0 once those of the steps it runs after that succeed
    // in this statement are taken from it (their release passes over the rows the statement completes: the count is
    // written so, held back or not), and its workflow would release it. Plain tasks stop at the first test; other steps
    // at the second (their count is 0).
    private static string RetryHeldBack(string tasks, string workflows, string edges) => $"""
        (t.workflow_id IS NOT NULL AND t.pending_steps > 0 AND u.state = {StoredStates.Retrying} AND NOT t.cancel_requested
            AND (SELECT w.state = 0 OR (w.state = 2 AND w.active_steps = -1 AND t.run_when = 1) FROM {workflows} w WHERE w.id = t.workflow_id)
            AND t.pending_steps > {SucceedingHere(tasks, edges)})
        """;

    // How many of the steps that row t runs after succeed in this statement (their lease held, as CompleteSql's condition;
    // `state + 0` as in HeldByLease).
    private static string SucceedingHere(string tasks, string edges) => $"""
        (SELECT count(*) FROM unnest(@id::uuid[], @token::bigint[], @state::int[]) AS s(id, token, state)
            JOIN {edges} e ON e.from_task = s.id AND e.to_task = t.id
            JOIN {tasks} d ON d.id = s.id AND d.lease_token = s.token AND d.state + 0 = {StoredStates.Running}
         WHERE s.state = {StoredStates.Succeeded})
        """;

    // The completion (CompleteSql), and what its steps' successes mean for their workflows, in one statement: the step
    // trigger skips a success (migration 011: pending_steps = -1 marks it), so the statement locks the workflows of the
    // steps that succeeded (running ones, and those failed by a stop, active_steps -1, whose steps released when all
    // ended it still releases: migration 015) (in id order, before any dependent: the trigger's order, so that a failure in another
    // transaction cannot deadlock with it), takes from each pending dependent the number of its dependencies that
    // succeeded here, queues those left waiting for none, moves each workflow's active count once, and ends a workflow
    // left with nothing active (its trigger, at the end of the statement, cancels its steps still pending). A step that a
    // retry of its own took back to pending (RetryHeldBack) is no longer active either. It returns the
    // queues of the steps released, and the completions not settled as asked (CompletionOverride), each named by id and
    // token (a batch may hold two leases of one task: an old one, ignored, and the current one): the rows whose state is
    // not the one asked (a retry cancelled, or held back in pending), and the leases that changed no row (looked up only
    // when fewer rows changed than completions came). Each array is NULL when there are none (array_agg of no rows), so
    // that the common batch reads no array. For plain tasks the extra parts read empty sets.
    internal static string CompleteStepsSql(string tasks, string workflows, string edges) => $"""
        WITH done AS (
            {CompleteSql(tasks, workflows, edges)}
            RETURNING t.id, u.token, t.workflow_id, t.state, u.state AS asked),
        stepped AS (SELECT id, workflow_id, state FROM done WHERE workflow_id IS NOT NULL AND state IN ({StoredStates.Succeeded}, {StoredStates.Pending})),
        ended AS (SELECT id, workflow_id FROM stepped WHERE state = {StoredStates.Succeeded}),
        locked AS (
            SELECT w.id, w.state FROM {workflows} w WHERE w.id IN (SELECT workflow_id FROM stepped)
              AND (w.state = 0 OR (w.state = 2 AND w.active_steps = -1))
            ORDER BY w.id FOR UPDATE),
        deps AS (SELECT e.to_task, count(*)::int AS n FROM {edges} e JOIN ended d ON e.from_task = d.id GROUP BY e.to_task),
        released AS (
            UPDATE {tasks} t SET pending_steps = t.pending_steps - deps.n,
                state = CASE WHEN t.state = {StoredStates.Pending} AND t.pending_steps = deps.n THEN {StoredStates.Queued} ELSE t.state END,
                history = CASE WHEN t.state = {StoredStates.Pending} AND t.pending_steps = deps.n THEN t.history || '|{StoredStates.Queued}:' || @now ELSE t.history END
            FROM deps JOIN {tasks} o ON o.id = deps.to_task
            WHERE t.id = deps.to_task AND ({CountedStep("t")})
              AND t.id NOT IN (SELECT id FROM done)
              AND t.workflow_id IN (SELECT id FROM locked WHERE state = 0 OR t.run_when = 1)
            RETURNING t.workflow_id, t.queue, {ReleasedNow("t", "o")} AS queued),
        delta AS (
            SELECT l.id, (SELECT count(*) FROM released r WHERE r.workflow_id = l.id AND r.queued)
                - (SELECT count(*) FROM stepped s WHERE s.workflow_id = l.id) AS n
            FROM locked l WHERE l.state = 0),
        counted AS (
            -- Relative to the row as updated (not to the statement's snapshot, which predates a transaction that held
            -- the lock before this one).
            UPDATE {workflows} w SET active_steps = w.active_steps + d.n,
                state = CASE WHEN w.active_steps + d.n = 0 THEN (CASE WHEN w.failed THEN 2 ELSE 1 END) ELSE w.state END,
                finished_at = CASE WHEN w.active_steps + d.n = 0 THEN @now ELSE w.finished_at END
            FROM delta d WHERE w.id = d.id
            RETURNING w.id),
        otherwise AS (
            SELECT array_agg(id) AS ids, array_agg(token) AS tokens, array_agg(state::int) AS states FROM done WHERE state <> asked),
        ignored AS (
            SELECT array_agg(s.id) AS ids, array_agg(s.token) AS tokens
            FROM unnest(@id::uuid[], @token::bigint[]) AS s(id, token)
            WHERE (SELECT count(*) FROM done) < cardinality(@id::uuid[])
              AND NOT EXISTS (SELECT 1 FROM done d WHERE d.id = s.id AND d.token = s.token))
        SELECT (SELECT count(*) FROM counted), ARRAY(SELECT DISTINCT queue FROM released WHERE queued),
            o.ids, o.tokens, o.states, i.ids, i.tokens
        FROM otherwise o, ignored i
        """;

    /// <summary>The steps whose count an end of a step they run after lowers: a pending one, and one that a workflow's
    /// retry counted while it was leased (still running, or scheduled, queued or retrying since: any other's count is
    /// 0), whose lease, if it ends without an outcome while the count is above 0, takes it back to pending
    /// (<see cref="LeaseHeldBack"/>). One update covers both, so that a row changed meanwhile by a lease's end is read
    /// again as it now is. Only a pending one is queued at 0.</summary>
    internal static string CountedStep(string t) =>
        $"{t}.state = {StoredStates.Pending} OR ({t}.pending_steps > 0 AND {t}.state IN ({StoredStates.Scheduled}, {StoredStates.Queued}, {StoredStates.Running}, {StoredStates.Retrying}))";

    /// <summary>Whether the update of <see cref="CountedStep"/> row <paramref name="t"/> queued it: queued now, and pending
    /// or leased as the statement's snapshot read it (<paramref name="old"/>, the same row joined: a row read again
    /// because a lease's end made it pending meanwhile was running there; one queued before was queued there).</summary>
    internal static string ReleasedNow(string t, string old) =>
        $"({t}.state = {StoredStates.Queued} AND {old}.state IN ({StoredStates.Pending}, {StoredStates.Running}))";

    // Its arrays come in id order, as completions and extensions lock rows (see CompleteAsync). Committed without
    // waiting for its WAL flush, as a fetch is: a start lost in a PostgreSQL crash only makes its lease look unstarted
    // (the attempt is not counted), and it cannot outlive a durable completion, whose commit flushes the WAL before it.
    internal static string StartSql(string tasks) => $"""
        UPDATE {tasks} t SET lease_started = true
        FROM unnest(@id::uuid[], @token::bigint[]) AS u(id, token)
        WHERE t.id = u.id AND t.lease_token = u.token AND {HeldByLease}
          AND (SELECT set_config('synchronous_commit', 'off', true)) = 'off'
        RETURNING t.id, t.lease_token
        """;

    // Its arrays come in id order, as completions lock rows.
    internal static string ExtendSql(string tasks) => $"""
        UPDATE {tasks} t SET lease_expires = @expires
        FROM unnest(@id::uuid[], @token::bigint[]) AS u(id, token)
        WHERE t.id = u.id AND t.lease_token = u.token AND {HeldByLease}
        RETURNING t.id, t.lease_token, t.cancel_requested
        """;

    // A hand-back of leases by id (EndLeaseSet's parameters), in id order.
    internal static string ReleaseSql(string tasks, string workflows) => $"""
        UPDATE {tasks} t SET {EndLeaseSet(workflows)}
        FROM unnest(@id::uuid[], @token::bigint[]) AS u(id, token)
        WHERE t.id = u.id AND t.lease_token = u.token AND {HeldByLease}
        RETURNING t.state, t.id, t.workflow_id
        """;

    // A lease that ends without an outcome, by LeaseRules (the in-memory backend's EndLease is the reference). SET
    // expressions read the old row, so each names the case it is in: cancel asked, never started, or interrupted (the
    // last interruption makes the task dead).
    private const string LeaseCancelled = "cancel_requested";
    private const string LeaseUnstarted = "NOT cancel_requested AND NOT lease_started";
    private const string LeaseInterrupted = "NOT cancel_requested AND lease_started";
    private const string LeaseInterruptedLast = $"{LeaseInterrupted} AND interruptions + 1 >= {LeaseEndings.MaxInterruptions}";
    // A step that its workflow's retry counted while it was leased (pending_steps, lowered since by the ends of the steps
    // it runs after: CountedStep) and that steps the retry ran again still hold back goes back to pending, not to its
    // queue, if its workflow would release it (running, or failed by a stop that spared it). Any other step counts 0
    // while it runs; plain tasks stop at the first test.
    private static string LeaseHeldBack(string workflows) => $"""
        workflow_id IS NOT NULL AND pending_steps > 0
            AND (SELECT w.state = 0 OR (w.state = 2 AND w.active_steps = -1 AND run_when = 1) FROM {workflows} w WHERE w.id = workflow_id)
        """;

    private static string StateAfterLease(string workflows) =>
        $"CASE WHEN {LeaseCancelled} THEN {StoredStates.Cancelled} WHEN {LeaseInterruptedLast} THEN {StoredStates.Dead} WHEN {LeaseHeldBack(workflows)} THEN {StoredStates.Pending} ELSE {StoredStates.Queued} END";

    // Appends an AttemptError (as serialized by ConveyorJson) for the interrupted attempt.
    private const string AppendInterruptedError =
        "coalesce(errors || chr(10), '') || jsonb_build_object('attempt', attempt, 'at', @at::jsonb, 'error', @error::jsonb)::text";

    // @lapse: 1 when a lease that never started counts as a lapse (it ran out or was abandoned), 0 for a clean hand-back.
    // The task keeps its seq, so a lease that comes back unstarted keeps its place in its queue.
    private static string EndLeaseSet(string workflows) => $"""
        state = {StateAfterLease(workflows)},
            attempt = CASE WHEN {LeaseUnstarted} THEN attempt - 1 ELSE attempt END,
            lapses = CASE WHEN {LeaseCancelled} THEN lapses WHEN {LeaseUnstarted} THEN lapses + @lapse ELSE lapses + 1 END,
            interruptions = CASE WHEN {LeaseInterrupted} THEN interruptions + 1 ELSE interruptions END,
            error = CASE WHEN {LeaseInterrupted} THEN @error ELSE error END,
            errors = CASE WHEN {LeaseInterrupted} THEN {AppendInterruptedError} ELSE errors END,
            redelivered = CASE WHEN {LeaseInterrupted} AND NOT ({LeaseInterruptedLast}) THEN true ELSE redelivered END,
            finished_at = CASE WHEN {LeaseCancelled} OR ({LeaseInterruptedLast}) THEN @now ELSE finished_at END,
            lease_owner = CASE WHEN {LeaseCancelled} OR ({LeaseInterruptedLast}) THEN lease_owner ELSE NULL END,
            lease_token = NULL, lease_expires = NULL,
            history = history || '|' || ({StateAfterLease(workflows)}) || ':' || @now
        """;

    // Queues whose row is committed: enqueues skip the insert for them. Filled only after a commit.
    private readonly ConcurrentDictionary<string, bool> _knownQueues = new(StringComparer.Ordinal);

    /// <inheritdoc />
    public Task<IReadOnlyList<EnqueueResult>> EnqueueAsync(IReadOnlyList<TaskMessage> messages, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        return messages.Count == 0 ? Task.FromResult<IReadOnlyList<EnqueueResult>>([]) : _enqueueGroups.EnqueueAsync(messages, cancellationToken);
    }

    /// <summary>Inserts one group (the calls <see cref="PostgresEnqueueGroups"/> merged) in one round trip and transaction.</summary>
    private async Task<EnqueueResult[]> InsertAsync(IReadOnlyList<TaskMessage> messages, CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        var nowMs = now.ToUnixTimeMilliseconds();
        var n = messages.Count;
        var states = new TaskState[n];
        var ids = new Guid[n];
        var tasks = new string[n];
        var queues = new string[n];
        var stateValues = new short[n];
        var priorities = new int[n];
        var args = new string?[n];
        var maxAttempts = new int[n];
        var baseDelays = new long[n];
        var maxDelays = new long[n];
        var jitters = new double[n];
        var timeouts = new long?[n];
        var notBefores = new long?[n];
        var expires = new long?[n];
        var created = new long[n];
        var keys = new string?[n];
        var headers = new string?[n];
        var histories = new string[n];
        var newQueues = new HashSet<string>(StringComparer.Ordinal);
        // Messages of one enqueue often share their headers (the trace context of the call): serialized once.
        IReadOnlyDictionary<string, string>? lastHeaders = null;
        string? lastHeadersJson = null;
        for (var i = 0; i < n; i++)
        {
            var m = messages[i];
            var state = m.InitialState(now);
            states[i] = state;
            ids[i] = m.Id;
            tasks[i] = m.Task;
            queues[i] = m.Queue;
            stateValues[i] = (short)state;
            priorities[i] = m.Priority;
            args[i] = m.Args;
            maxAttempts[i] = m.MaxAttempts;
            baseDelays[i] = (long)m.Retry.BaseDelay.TotalMilliseconds;
            maxDelays[i] = (long)m.Retry.MaxDelay.TotalMilliseconds;
            jitters[i] = m.Retry.Jitter;
            timeouts[i] = m.Timeout is { } t ? (long)t.TotalMilliseconds : null;
            notBefores[i] = m.NotBefore?.ToUnixTimeMilliseconds();
            expires[i] = m.ExpiresAt?.ToUnixTimeMilliseconds();
            created[i] = m.CreatedAt.ToUnixTimeMilliseconds();
            keys[i] = m.IdempotencyKey;
            var stored = RetryHeaders.ToStored(m);
            if (!ReferenceEquals(stored, lastHeaders))
            {
                lastHeaders = stored;
                lastHeadersJson = StoredHeaders.Serialize(stored);
            }
            headers[i] = lastHeadersJson;
            histories[i] = $"{(int)state}:{nowMs}";
            if (!_knownQueues.ContainsKey(m.Queue))
            {
                newQueues.Add(m.Queue);
            }
        }

        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        // One round trip: queue rows and the tasks, in the batch's implicit transaction; the wake-up follows the commit.
        await using var batch = new NpgsqlBatch(connection);
        if (newQueues.Count > 0)
        {
            var queuesCommand = new NpgsqlBatchCommand($"INSERT INTO {_queues} (name) SELECT unnest(@names::text[]) ON CONFLICT (name) DO NOTHING");
            queuesCommand.Parameters.AddWithValue("names", newQueues.ToArray());
            batch.BatchCommands.Add(queuesCommand);
        }
        var insert = new NpgsqlBatchCommand(_insertSql);
        var p = insert.Parameters;
        p.AddWithValue("id", ids);
        p.AddWithValue("task", tasks);
        p.AddWithValue("queue", queues);
        p.AddWithValue("state", stateValues);
        p.AddWithValue("priority", priorities);
        p.AddWithValue("args", args);
        p.AddWithValue("max", maxAttempts);
        p.AddWithValue("base", baseDelays);
        p.AddWithValue("maxdelay", maxDelays);
        p.AddWithValue("jitter", jitters);
        p.AddWithValue("timeout", timeouts);
        p.AddWithValue("nb", notBefores);
        p.AddWithValue("exp", expires);
        p.AddWithValue("created", created);
        p.AddWithValue("key", keys);
        p.AddWithValue("headers", headers);
        p.AddWithValue("history", histories);
        batch.BatchCommands.Add(insert);

        var inserted = new HashSet<Guid>();
        await using (var reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            do
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    if (reader.FieldCount == 1 && reader.GetDataTypeName(0) == "uuid")
                    {
                        inserted.Add(reader.GetGuid(0));
                    }
                }
            }
            while (await reader.NextResultAsync(cancellationToken).ConfigureAwait(false));
        }
        foreach (var queue in newQueues)
        {
            _knownQueues.TryAdd(queue, true);
        }
        if (inserted.Count > 0)
        {
            var readyQueues = new HashSet<string>(StringComparer.Ordinal);
            for (var i = 0; i < n; i++)
            {
                if (states[i] == TaskState.Queued && inserted.Contains(ids[i]))
                {
                    readyQueues.Add(queues[i]);
                }
            }
            foreach (var queue in readyQueues)
            {
                Ready(queue);
            }
        }

        var results = new EnqueueResult[n];
        var pending = new bool[n];
        List<string>? conflicted = null;
        for (var i = 0; i < n; i++)
        {
            if (inserted.Contains(ids[i]) || keys[i] is null)
            {
                results[i] = new EnqueueResult(ids[i], true, states[i]);
            }
            else
            {
                pending[i] = true;
                (conflicted ??= []).Add(keys[i]!);
            }
        }
        if (conflicted is not null)
        {
            // Second round trip, only when a key existed: the tasks that hold those keys.
            var existing = new Dictionary<string, (Guid Id, TaskState State)>(StringComparer.Ordinal);
            await using var command = Command(connection, $"SELECT idempotency_key, id, state FROM {_tasks} WHERE idempotency_key = ANY(@keys)");
            command.Parameters.AddWithValue("keys", conflicted.ToArray());
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                existing[reader.GetString(0)] = (reader.GetGuid(1), (TaskState)reader.GetInt16(2));
            }
            for (var i = 0; i < n; i++)
            {
                if (pending[i])
                {
                    var found = existing[keys[i]!];
                    results[i] = new EnqueueResult(found.Id, false, found.State);
                }
            }
        }
        return results;
    }

    /// <inheritdoc />
    /// <remarks>Returns at once: a worker waits for work on the notifier's ready channel, not here.</remarks>
    public async Task<IReadOnlyList<Lease>> FetchAsync(FetchRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        cancellationToken.ThrowIfCancellationRequested();
        // The fetch runs to its commit even if the caller is cancelled meanwhile: its leases must reach the caller.
        return await FetchOnceAsync(request).ConfigureAwait(false);
    }

    private async Task<List<Lease>> FetchOnceAsync(FetchRequest request)
    {
        var now = Now();
        var expires = now + (long)request.LeaseDuration.TotalMilliseconds;
        var token = Random.Shared.NextInt64(1, long.MaxValue);
        var leases = new List<Lease>();
        await using var connection = await OpenAsync(CancellationToken.None).ConfigureAwait(false);
        await using var command = Command(connection, _fetchSql);
        var queue = command.Parameters.AddWithValue("queue", "");
        var limit = command.Parameters.AddWithValue("limit", 0);
        command.Parameters.AddWithValue("owner", request.WorkerId);
        command.Parameters.AddWithValue("token", token);
        command.Parameters.AddWithValue("expires", expires);
        command.Parameters.AddWithValue("now", now);
        // One statement per queue, in QueueOrder; usually the first fills the batch (one round trip).
        foreach (var q in QueueOrder.For(request))
        {
            var remaining = request.MaxCount - leases.Count;
            if (remaining <= 0)
            {
                break;
            }
            queue.Value = q.Name;
            limit.Value = remaining;
            var fetched = new List<(int Priority, long Sequence, Lease Lease)>();
            var shared = default(SharedFields);
            await using (var reader = await command.ExecuteReaderAsync(CancellationToken.None).ConfigureAwait(false))
            {
                while (await reader.ReadAsync(CancellationToken.None).ConfigureAwait(false))
                {
                    var lease = ReadLease(reader, token, expires, ref shared);
                    fetched.Add((lease.Message.Priority, reader.GetInt64(0), lease));
                }
            }
            // RETURNING gives no order: restore priority, then FIFO, within this queue's share.
            fetched.Sort(static (x, y) => x.Priority != y.Priority ? y.Priority.CompareTo(x.Priority) : x.Sequence.CompareTo(y.Sequence));
            foreach (var item in fetched)
            {
                leases.Add(item.Lease);
            }
        }
        return leases;
    }

    private static Lease ReadLease(NpgsqlDataReader r, long token, long expires, ref SharedFields shared)
    {
        var (retry, headers) = RetryHeaders.FromStored(
            shared.Retry(r.GetInt64(10), r.GetInt64(11), r.GetDouble(12)),
            shared.Headers(ReadString(r, 15)));
        var message = new TaskMessage
        {
            Id = r.GetGuid(1),
            Task = r.GetString(2),
            Queue = r.GetString(3),
            Priority = r.GetInt32(4),
            Args = ReadString(r, 5),
            NotBefore = FromMs(r, 6),
            ExpiresAt = FromMs(r, 7),
            MaxAttempts = r.GetInt32(9),
            Retry = retry,
            Timeout = r.IsDBNull(13) ? null : TimeSpan.FromMilliseconds(r.GetInt64(13)),
            IdempotencyKey = ReadString(r, 14),
            Headers = headers,
            CreatedAt = FromMs(r.GetInt64(16)),
        };
        return new Lease(message, token, r.GetInt32(8), r.GetBoolean(17), FromMs(expires)) { RecordStartFirst = r.GetInt32(18) > 0 };
    }

    /// <summary>The retry policy and headers of the last row read: the rows of one fetch mostly share them (the tasks of
    /// one enqueue carry its trace context), so each is made, and the headers parsed, once per run of rows that repeat it
    /// rather than once per row. Neither is mutable, so messages may share them.</summary>
    private struct SharedFields
    {
        private RetryPolicyReuse _retry;
        private string? _headersText;
        private IReadOnlyDictionary<string, string>? _headers;

        public RetryPolicy Retry(long baseDelayMs, long maxDelayMs, double jitter) => _retry.Get(baseDelayMs, maxDelayMs, jitter);

        public IReadOnlyDictionary<string, string>? Headers(string? text)
        {
            if (text is null)
            {
                return null;
            }
            if (!string.Equals(text, _headersText, StringComparison.Ordinal))
            {
                _headers = StoredHeaders.Parse(text);
                _headersText = text;
            }
            return _headers;
        }
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<CompletionOverride>> CompleteAsync(IReadOnlyList<Completion> completions, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(completions);
        var n = completions.Count;
        if (n == 0)
        {
            return CompletionOverride.None;
        }
        // In id order, as ExtendLeasesAsync sorts too: two batches that share rows (a completion and the
        // heartbeat's extension) then lock them in the same order and cannot deadlock on each other.
        completions = [.. completions.OrderBy(c => c.Lease.TaskId)];
        var ids = new Guid[n];
        var tokens = new long[n];
        var states = new int[n];
        var results = new string?[n];
        var errors = new string?[n];
        var entries = new string?[n];
        var notBefores = new long?[n];
        var finished = new long?[n];
        var ats = new long[n];
        var unspent = new int[n];
        var setHeaders = new bool[n];
        var headers = new string?[n];
        for (var i = 0; i < n; i++)
        {
            var c = completions[i];
            var state = StoredStates.AfterCompletion(c.Kind);
            var at = c.At.ToUnixTimeMilliseconds();
            ids[i] = c.Lease.TaskId;
            tokens[i] = c.Lease.Token;
            states[i] = (int)state;
            results[i] = c.Result;
            errors[i] = c.Error is null ? null : JsonSerializer.Serialize(c.Error, ConveyorJson.Options);
            entries[i] = c.Error is null ? null : JsonSerializer.Serialize(new AttemptError(c.Attempt, c.At, c.Error), ConveyorJson.Options);
            notBefores[i] = c.Kind == CompletionKind.Retry ? (c.RetryAt ?? c.At).ToUnixTimeMilliseconds() : null;
            finished[i] = state.IsTerminal() ? at : null;
            ats[i] = at;
            unspent[i] = c.Unstarted && c.Kind == CompletionKind.Retry ? 1 : 0;
            setHeaders[i] = c.Kind == CompletionKind.Retry && c.Headers is not null;
            headers[i] = setHeaders[i] ? StoredHeaders.Serialize(c.Headers) : null;
        }
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, _completeSql);
        var p = command.Parameters;
        p.AddWithValue("id", ids);
        p.AddWithValue("token", tokens);
        p.AddWithValue("state", states);
        p.AddWithValue("result", results);
        p.AddWithValue("error", errors);
        p.AddWithValue("entry", entries);
        p.AddWithValue("nb", notBefores);
        p.AddWithValue("finished", finished);
        p.AddWithValue("at", ats);
        p.AddWithValue("unspent", unspent);
        p.AddWithValue("set_headers", setHeaders);
        p.AddWithValue("headers", headers);
        p.AddWithValue("now", ats.Max());
        string[] queues;
        var overrides = CompletionOverride.None;
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            queues = reader.GetFieldValue<string[]>(1);
            if (!reader.IsDBNull(2) || !reader.IsDBNull(5))
            {
                overrides = Overrides(
                    reader.IsDBNull(2) ? [] : reader.GetFieldValue<Guid[]>(2),
                    reader.IsDBNull(2) ? [] : reader.GetFieldValue<long[]>(3),
                    reader.IsDBNull(2) ? [] : reader.GetFieldValue<int[]>(4),
                    reader.IsDBNull(5) ? [] : reader.GetFieldValue<Guid[]>(5),
                    reader.IsDBNull(5) ? [] : reader.GetFieldValue<long[]>(6));
            }
        }
        foreach (var queue in queues)
        {
            Ready(queue);
        }
        return overrides;
    }

    /// <summary>The completions not settled as asked, from the leases (ids and tokens, side by side) the statement
    /// returned: those settled in another state (<paramref name="states"/>) and those it ignored.</summary>
    private static List<CompletionOverride> Overrides(Guid[] otherwiseIds, long[] otherwiseTokens, int[] states, Guid[] ignoredIds, long[] ignoredTokens)
    {
        var overrides = new List<CompletionOverride>(otherwiseIds.Length + ignoredIds.Length);
        for (var i = 0; i < otherwiseIds.Length; i++)
        {
            overrides.Add(new CompletionOverride(new LeaseRef(otherwiseIds[i], otherwiseTokens[i]), (TaskState)states[i]));
        }
        for (var i = 0; i < ignoredIds.Length; i++)
        {
            overrides.Add(CompletionOverride.Ignored(new LeaseRef(ignoredIds[i], ignoredTokens[i])));
        }
        return overrides;
    }

    /// <inheritdoc />
    public async Task<LeaseExtension> ExtendLeasesAsync(IReadOnlyList<LeaseRef> leases, TimeSpan duration, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(leases);
        if (leases.Count == 0)
        {
            return LeaseExtension.None;
        }
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, ExtendSql(_tasks));
        var ordered = leases.OrderBy(l => l.TaskId).ToArray();
        command.Parameters.AddWithValue("expires", Now() + (long)duration.TotalMilliseconds);
        command.Parameters.AddWithValue("id", ordered.Select(l => l.TaskId).ToArray());
        command.Parameters.AddWithValue("token", ordered.Select(l => l.Token).ToArray());
        var held = new HashSet<LeaseRef>();
        var cancel = new List<Guid>();
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                var id = reader.GetGuid(0);
                held.Add(new LeaseRef(id, reader.GetInt64(1)));
                if (reader.GetBoolean(2))
                {
                    cancel.Add(id);
                }
            }
        }
        var lost = leases.Where(l => !held.Contains(l)).ToList();
        return new LeaseExtension(cancel, lost);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<LeaseRef>> StartAsync(IReadOnlyList<LeaseRef> leases, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(leases);
        if (leases.Count == 0)
        {
            return [];
        }
        var ordered = leases.OrderBy(l => l.TaskId).ToArray();
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, _startSql);
        command.Parameters.AddWithValue("id", ordered.Select(l => l.TaskId).ToArray());
        command.Parameters.AddWithValue("token", ordered.Select(l => l.Token).ToArray());
        var held = new HashSet<LeaseRef>();
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                held.Add(new LeaseRef(reader.GetGuid(0), reader.GetInt64(1)));
            }
        }
        return held.Count == leases.Count ? [] : leases.Where(l => !held.Contains(l)).ToList();
    }

    /// <inheritdoc />
    public Task<LeaseSweep> AbandonLeasesAsync(string workerId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(workerId);
        return EndLeasesAsync(
            $"UPDATE {_tasks} SET {EndLeaseSet(_workflows)} WHERE state = {StoredStates.Running} AND lease_owner = @owner RETURNING state, id, workflow_id",
            lapse: true, p => p.AddWithValue("owner", workerId), cancellationToken);
    }

    /// <inheritdoc />
    public async Task<LeaseSweep> ReleaseAsync(IReadOnlyList<LeaseRef> leases, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(leases);
        if (leases.Count == 0)
        {
            return LeaseSweep.None;
        }
        // A lease that never started (and whose cancel was not asked) is a clean hand-back: not a lapse. In id order, as
        // completions and extensions lock rows.
        var ordered = leases.OrderBy(l => l.TaskId).ToArray();
        return await EndLeasesAsync(ReleaseSql(_tasks, _workflows), lapse: false, p =>
        {
            p.AddWithValue("id", ordered.Select(l => l.TaskId).ToArray());
            p.AddWithValue("token", ordered.Select(l => l.Token).ToArray());
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public Task<LeaseSweep> RequeueExpiredLeasesAsync(CancellationToken cancellationToken) =>
        EndLeasesAsync(
            $"UPDATE {_tasks} SET {EndLeaseSet(_workflows)} WHERE state = {StoredStates.Running} AND lease_expires < @now RETURNING state, id, workflow_id",
            lapse: true, _ => { }, cancellationToken);

    /// <summary>Runs one statement that sets <see cref="EndLeaseSet"/> and returns the new state, the id and the workflow;
    /// publishes ready (any queue) after its commit when a task became ready. Returns how many leases ended and those that
    /// ended for good. In the same statement, each running workflow whose steps it took back to pending
    /// (<see cref="LeaseHeldBack"/>) counts them no longer active, relative to its row as it is (locked), and ends if none
    /// is left (its trigger cancels its pending steps: what holds them back can never end, a failure under continue);
    /// such a step is then named among those that ended, cancelled, so that the workflow's end is announced.</summary>
    private async Task<LeaseSweep> EndLeasesAsync(string updateSql, bool lapse, Action<NpgsqlParameterCollection> parameters, CancellationToken cancellationToken)
    {
        var now = Now();
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, $"""
            WITH e AS ({updateSql}),
            held AS (
                UPDATE {_workflows} w SET active_steps = w.active_steps - h.n,
                    state = CASE WHEN w.active_steps = h.n THEN (CASE WHEN w.failed THEN 2 ELSE 1 END) ELSE w.state END,
                    finished_at = CASE WHEN w.active_steps = h.n THEN @now ELSE w.finished_at END
                FROM (SELECT workflow_id, count(*)::int AS n FROM e WHERE state = {StoredStates.Pending} GROUP BY workflow_id) h
                WHERE w.id = h.workflow_id AND w.state = 0
                RETURNING w.id, w.state <> 0 AS ended)
            SELECT (CASE WHEN e.state = {StoredStates.Pending} AND e.workflow_id IN (SELECT id FROM held WHERE ended) THEN {StoredStates.Cancelled} ELSE e.state END)::smallint, e.id
            FROM e
            """);
        command.Parameters.AddWithValue("now", now);
        command.Parameters.AddWithValue("error", LeaseEndings.InterruptedErrorJson);
        command.Parameters.AddWithValue("at", LeaseEndings.AtJson(FromMs(now)));
        command.Parameters.AddWithValue("lapse", lapse ? 1 : 0);
        parameters(command.Parameters);
        var count = 0;
        var ready = false;
        List<EndedLease>? ended = null;
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                count++;
                var state = (TaskState)reader.GetInt16(0);
                if (state == TaskState.Queued)
                {
                    ready = true;
                }
                else if (state is TaskState.Dead or TaskState.Cancelled)
                {
                    (ended ??= []).Add(new EndedLease(reader.GetGuid(1), state));
                }
            }
        }
        if (ready)
        {
            Ready("");
        }
        return count == 0 ? LeaseSweep.None : new LeaseSweep(count, (IReadOnlyList<EndedLease>?)ended ?? []);
    }

    /// <summary>Runs one statement and, when it changed rows, publishes ready (any queue) after its commit.</summary>
    private async Task<int> ExecuteAndNotifyAsync(string updateSql, Action<NpgsqlParameterCollection> parameters, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, updateSql);
        parameters(command.Parameters);
        var count = await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        if (count > 0)
        {
            Ready("");
        }
        return count;
    }

    /// <inheritdoc />
    public Task<int> PromoteDueAsync(CancellationToken cancellationToken) =>
        ExecuteAndNotifyAsync($"""
            UPDATE {_tasks} SET state = {StoredStates.Queued}, history = history || '|{StoredStates.Queued}:' || @now
            WHERE state IN ({StoredStates.Due}) AND not_before <= @now
            """, p => p.AddWithValue("now", Now()), cancellationToken);

    /// <inheritdoc />
    public async Task<DateTimeOffset?> NextDueAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, $"SELECT min(not_before) FROM {_tasks} WHERE state IN ({StoredStates.Due})");
        var value = await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
        return value is long ms ? FromMs(ms) : null;
    }

    /// <inheritdoc />
    public async Task<CancelOutcome> CancelAsync(Guid taskId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        // One statement: cancel a waiting task, or flag a running one, and say which (or whether it exists).
        await using var command = Command(connection, $"""
            WITH cancelled AS (
                UPDATE {_tasks} SET state = {StoredStates.Cancelled}, finished_at = @now, history = history || '|{StoredStates.Cancelled}:' || @now
                WHERE id = @id AND state IN ({StoredStates.Waiting}) RETURNING 1),
            requested AS (
                UPDATE {_tasks} SET cancel_requested = true WHERE id = @id AND state = {StoredStates.Running} RETURNING 1)
            SELECT (SELECT count(*) FROM cancelled), (SELECT count(*) FROM requested), (SELECT count(*) FROM {_tasks} WHERE id = @id)
            """);
        command.Parameters.AddWithValue("now", Now());
        command.Parameters.AddWithValue("id", taskId);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        if (reader.GetInt64(0) > 0)
        {
            return CancelOutcome.Cancelled;
        }
        if (reader.GetInt64(1) > 0)
        {
            return CancelOutcome.Requested;
        }
        return reader.GetInt64(2) == 0 ? CancelOutcome.NotFound : CancelOutcome.AlreadyFinished;
    }

    /// <inheritdoc />
    public async Task<RetryOutcome> RetryAsync(Guid taskId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using (var retry = Command(connection, $"""
            UPDATE {_tasks} SET state = {StoredStates.Queued}, attempt = 0, lapses = 0, interruptions = 0, finished_at = NULL, not_before = NULL, expires_at = NULL,
                cancel_requested = false, redelivered = false, history = history || '|{StoredStates.Queued}:' || @now
            WHERE id = @id AND state IN ({StoredStates.Retryable})
            RETURNING queue
            """))
        {
            retry.Parameters.AddWithValue("now", Now());
            retry.Parameters.AddWithValue("id", taskId);
            if (await retry.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is string queue)
            {
                Ready(queue);
                return RetryOutcome.Requeued;
            }
        }
        await using var exists = Command(connection, $"SELECT 1 FROM {_tasks} WHERE id = @id");
        exists.Parameters.AddWithValue("id", taskId);
        return await exists.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is null ? RetryOutcome.NotFound : RetryOutcome.NotRetryable;
    }

    /// <inheritdoc />
    public Task PauseQueueAsync(string queue, CancellationToken cancellationToken) => SetPausedAsync(queue, true, cancellationToken);

    /// <inheritdoc />
    public async Task ResumeQueueAsync(string queue, CancellationToken cancellationToken)
    {
        await SetPausedAsync(queue, false, cancellationToken).ConfigureAwait(false);
        Ready(queue);
    }

    private async Task SetPausedAsync(string queue, bool paused, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(queue);
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection,
            $"INSERT INTO {_queues} (name, paused) VALUES (@name, @paused) ON CONFLICT (name) DO UPDATE SET paused = excluded.paused");
        command.Parameters.AddWithValue("name", queue);
        command.Parameters.AddWithValue("paused", paused);
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }
}
