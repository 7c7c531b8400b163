using System.Text.Json;
using Conveyor.Backends;
using Conveyor.Sql;
using Microsoft.Data.Sqlite;

namespace Conveyor.Sqlite;

public sealed partial class SqliteBackend
{
    internal const string InsertSql = """
        INSERT INTO tasks (id, task, queue, state, priority, args, max_attempts, retry_base_ms, retry_max_ms, retry_jitter,
            timeout_ms, not_before, expires_at, created_at, idempotency_key, headers, history)
        VALUES ($id, $task, $queue, $state, $priority, $args, $max, $base, $maxdelay, $jitter,
            $timeout, $nb, $exp, $created, $key, $headers, $history)
        ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        """;

    private static readonly string[] InsertParameters =
        ["$id", "$task", "$queue", "$state", "$priority", "$args", "$max", "$base", "$maxdelay", "$jitter",
         "$timeout", "$nb", "$exp", "$created", "$key", "$headers", "$history"];

    private const string MessageColumns =
        "seq, id, task, queue, priority, args, not_before, expires_at, attempt, max_attempts, retry_base_ms, retry_max_ms, retry_jitter, timeout_ms, idempotency_key, headers, created_at, redelivered, lapses";

    // A fetch reads the rows it leases, then leases them: two statements, where one UPDATE … RETURNING cost more. SQLite
    // collects RETURNING's rows in a temporary b-tree and the IN list in another, each built and torn down per statement
    // (about 8 % of the writer's time in a drain, by perf); the SELECT reads straight from the ready index in order.
    internal const string FetchReadSql = $"""
        SELECT {MessageColumns} FROM tasks
        WHERE queue = $queue AND state = {StoredStates.Queued} AND NOT EXISTS (SELECT 1 FROM queues WHERE name = $queue AND paused = 1)
        ORDER BY priority DESC, seq LIMIT $limit + 0
        """;

    // The rows FetchReadSql just read, in the same transaction ($limit: how many it read), so the same rows. Both give
    // their limit as an expression, not a bare parameter: SQLite (3.46 on) reads a bare one's value when it plans the
    // statement, and so compiles the statement again each time another value is bound, which is every fetch.
    internal const string FetchLeaseSql = $"""
        UPDATE tasks SET state = {StoredStates.Running}, attempt = attempt + 1, lease_owner = $owner, lease_token = $token,
            lease_expires = $expires, lease_started = 0, started_at = $now, history = history || '|{StoredStates.Running}:' || $now
        WHERE seq IN (SELECT seq FROM tasks WHERE queue = $queue AND state = {StoredStates.Queued} ORDER BY priority DESC, seq LIMIT $limit + 0)
        """;

    // A retry of a task whose cancel was asked cancels it instead: the cancel reached the backend
    // before the worker heard of it, and must not be lost. (SET expressions read the old row.)
    private const string CompleteSet = $"""
        UPDATE tasks SET state = CASE WHEN $state = {StoredStates.Retrying} AND cancel_requested = 1 THEN {StoredStates.Cancelled} ELSE $state END,
            result = $result, error = coalesce($error, error),
            errors = CASE WHEN $errorEntry IS NULL THEN errors ELSE coalesce(errors || char(10), '') || $errorEntry END,
            not_before = $nb, finished_at = CASE WHEN $state = {StoredStates.Retrying} AND cancel_requested = 1 THEN $at ELSE $finished END,
            attempt = attempt - $unspent, headers = CASE WHEN $setHeaders = 1 THEN $headers ELSE headers END,
            lease_token = NULL, lease_expires = NULL, redelivered = 0, cancel_requested = 0,
            history = history || '|' || (CASE WHEN $state = {StoredStates.Retrying} AND cancel_requested = 1 THEN {StoredStates.Cancelled} ELSE $state END) || ':' || $at
        """;

    // A plain task's completion: it names no workflow column, so the step trigger (008) is not run for it.
    internal const string CompleteSql = $"""
        {CompleteSet}
        WHERE id = $id AND lease_token = $token AND state = {StoredStates.Running} AND workflow_id IS NULL
        """;

    // A plain task's success without an error (nearly every completion): CompleteSql with the cases that cannot apply left
    // out (no retry to cancel, no error to record, no attempt to give back, headers kept), so that SQLite evaluates and
    // binds a third of it. Its effect on the row is CompleteSql's for such a completion.
    internal const string CompleteSuccessSql = $"""
        UPDATE tasks SET state = {StoredStates.Succeeded}, result = $result, not_before = NULL, finished_at = $at,
            lease_token = NULL, lease_expires = NULL, redelivered = 0, cancel_requested = 0,
            history = history || '|{StoredStates.Succeeded}:' || $at
        WHERE id = $id AND lease_token = $token AND state = {StoredStates.Running} AND workflow_id IS NULL
        """;

    private static readonly string[] CompleteSuccessParameters = ["$result", "$at", "$id", "$token"];

    // A plain task's retry: as CompleteSql, returning the state it got (cancelled instead, when its cancel was asked), which
    // CompleteAsync reports. Successes keep CompleteSql or CompleteSuccessSql, which return nothing.
    private const string CompleteRetrySql = $"""
        {CompleteSql}
        RETURNING state
        """;

    // A workflow step's completion (when the plain one changed nothing): naming workflow_id runs the step trigger.
    private const string CompleteStepSql = $"""
        {CompleteSet}, workflow_id = workflow_id
        WHERE id = $id AND lease_token = $token AND state = {StoredStates.Running}
        """;

    private static readonly string[] CompleteParameters =
        ["$state", "$result", "$error", "$errorEntry", "$nb", "$finished", "$at", "$id", "$token", "$unspent", "$setHeaders", "$headers"];

    // No row changed: the lease is no longer held.
    internal const string StartSql =
        $"UPDATE tasks SET lease_started = 1 WHERE id = $id AND lease_token = $token AND state = {StoredStates.Running}";

    // A lease that ends without an outcome, by LeaseRules (the in-memory backend's EndLease is the reference). SET
    // expressions read the old row, so each names the case it is in: cancel asked, never started, or interrupted (the
    // last interruption makes the task dead).
    private const string LeaseCancelled = "cancel_requested = 1";
    private const string LeaseUnstarted = "cancel_requested = 0 AND lease_started = 0";
    private const string LeaseInterrupted = "cancel_requested = 0 AND lease_started = 1";
    private const string LeaseInterruptedLast = $"{LeaseInterrupted} AND interruptions + 1 >= {LeaseEndings.MaxInterruptions}";
    // A step leased when its workflow was retried whose lease ends while steps the retry ran again hold it back (counted
    // now, as the retry counts them: WorkflowRetrySql) goes back to pending, not to its queue, if its workflow would
    // release it (running, or failed by a stop that spared it). The retry left its count in pending_steps (ends since may
    // have lowered the truth, never raised it: only a retry undoes an end), so only a count above 0 is counted again (the
    // count reads the edges by their target, which no index serves); any other step's is 0, since a step is leased only
    // once what it runs after has succeeded (ended, for one released when all ended). Plain tasks stop at the first test.
    private static readonly string LeaseHeldBack = $"""
        workflow_id IS NOT NULL AND pending_steps > 0
            AND (SELECT w.state = 0 OR (w.state = 2 AND w.active_steps = -1 AND tasks.run_when = 1) FROM workflows w WHERE w.id = tasks.workflow_id)
            AND {WorkflowRetrySql.HeldBackBy("tasks", "workflow_edges", "tasks")} > 0
        """;
    private static readonly string StateAfterLease =
        $"CASE WHEN {LeaseCancelled} THEN {StoredStates.Cancelled} WHEN {LeaseInterruptedLast} THEN {StoredStates.Dead} WHEN {LeaseHeldBack} THEN {StoredStates.Pending} ELSE {StoredStates.Queued} END";

    // A step's attempt that asks for a retry ($state retrying; run when the plain statement changed nothing, so plain tasks
    // never reach it): as CompleteStepSql, but a step that the retried steps of its workflow hold back (LeaseHeldBack) goes
    // back to pending, as at its lease's end: its retry's wait dropped, its count recounted, the attempt it ran kept. The
    // caller counts it no longer active (HeldBack). A cancel asked cancels it, as CompleteSet does.
    private static readonly string RetryHeldBack = $"cancel_requested = 0 AND {LeaseHeldBack}";
    private static readonly string StateAfterStepRetry =
        $"CASE WHEN {LeaseCancelled} THEN {StoredStates.Cancelled} WHEN {RetryHeldBack} THEN {StoredStates.Pending} ELSE $state END";
    private static readonly string CompleteStepRetrySql = $"""
        UPDATE tasks SET workflow_id = workflow_id, state = {StateAfterStepRetry},
            result = $result, error = coalesce($error, error),
            errors = CASE WHEN $errorEntry IS NULL THEN errors ELSE coalesce(errors || char(10), '') || $errorEntry END,
            not_before = CASE WHEN {RetryHeldBack} THEN NULL ELSE $nb END,
            finished_at = CASE WHEN {LeaseCancelled} THEN $at ELSE $finished END,
            pending_steps = CASE WHEN {RetryHeldBack} THEN {WorkflowRetrySql.HeldBackBy("tasks", "workflow_edges", "tasks")} ELSE 0 END,
            attempt = attempt - $unspent, headers = CASE WHEN $setHeaders = 1 THEN $headers ELSE headers END,
            lease_token = NULL, lease_expires = NULL, redelivered = 0, cancel_requested = 0,
            history = history || '|' || ({StateAfterStepRetry}) || ':' || $at
        WHERE id = $id AND lease_token = $token AND state = {StoredStates.Running}
        RETURNING state, workflow_id
        """;

    // Appends an AttemptError (as serialized by ConveyorJson) for the interrupted attempt.
    private const string AppendInterruptedError =
        "coalesce(errors || char(10), '') || json_object('attempt', attempt, 'at', json($at), 'error', json($error))";

    // $lapse: 1 when a lease that never started counts as a lapse (it ran out or was abandoned), 0 for a clean hand-back.
    // The task keeps its seq, so a lease that comes back unstarted keeps its place in its queue.
    private static readonly string EndLeaseSet = $"""
        workflow_id = workflow_id, state = {StateAfterLease},
            pending_steps = CASE WHEN {LeaseHeldBack} THEN {WorkflowRetrySql.HeldBackBy("tasks", "workflow_edges", "tasks")} ELSE 0 END,
            attempt = CASE WHEN {LeaseUnstarted} THEN attempt - 1 ELSE attempt END,
            lapses = CASE WHEN {LeaseCancelled} THEN lapses WHEN {LeaseUnstarted} THEN lapses + $lapse ELSE lapses + 1 END,
            interruptions = CASE WHEN {LeaseInterrupted} THEN interruptions + 1 ELSE interruptions END,
            error = CASE WHEN {LeaseInterrupted} THEN $error ELSE error END,
            errors = CASE WHEN {LeaseInterrupted} THEN {AppendInterruptedError} ELSE errors END,
            redelivered = CASE WHEN {LeaseInterrupted} AND NOT ({LeaseInterruptedLast}) THEN 1 ELSE redelivered END,
            finished_at = CASE WHEN {LeaseCancelled} OR ({LeaseInterruptedLast}) THEN $now ELSE finished_at END,
            lease_owner = CASE WHEN {LeaseCancelled} OR ({LeaseInterruptedLast}) THEN lease_owner ELSE NULL END,
            lease_token = NULL, lease_expires = NULL,
            history = history || '|' || ({StateAfterLease}) || ':' || $now
        """;

    /// <inheritdoc />
    public Task<IReadOnlyList<EnqueueResult>> EnqueueAsync(IReadOnlyList<TaskMessage> messages, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(messages);
        cancellationToken.ThrowIfCancellationRequested();
        var now = _time.GetUtcNow();
        var newQueues = new HashSet<string>(StringComparer.Ordinal);
        var readyQueues = new HashSet<string>(StringComparer.Ordinal);
        // Runs on the writer's thread right after the commit: only now are the queue rows durable (a batch
        // that rolled back must not mark its queues known), and notifying the workers here rather than in
        // the caller's continuation saves a thread-pool hop between an enqueue and its start. The writer sends
        // the ready notifications to other processes once all of the commit's operations have kept theirs.
        return Writer.RunAsync<IReadOnlyList<EnqueueResult>>(w => Insert(w, messages, now, newQueues, readyQueues), () =>
        {
            foreach (var queue in newQueues)
            {
                _knownQueues.TryAdd(queue, true);
            }
            foreach (var queue in readyQueues)
            {
                _notifier.Ready(queue);
            }
        });
    }

    private List<EnqueueResult> Insert(SqliteWriter w, IReadOnlyList<TaskMessage> messages, DateTimeOffset now, HashSet<string> newQueues, HashSet<string> readyQueues)
    {
        var insert = w.Prepared(InsertSql, InsertParameters);
        var results = new List<EnqueueResult>(messages.Count);
        var nowMs = now.ToUnixTimeMilliseconds();
        // Every row of a call starts its history at the same time: two strings serve them all.
        var queuedHistory = $"{(int)TaskState.Queued}:{nowMs}";
        var scheduledHistory = $"{(int)TaskState.Scheduled}:{nowMs}";
        Span<byte> id = stackalloc byte[16];
        // Messages of one enqueue often share their headers (the trace context of the call): serialized once.
        IReadOnlyDictionary<string, string>? lastHeaders = null;
        object? lastStoredHeaders = null;
        foreach (var m in messages)
        {
            EnsureQueue(w, m.Queue, newQueues);
            var state = m.InitialState(now);
            m.Id.TryWriteBytes(id, bigEndian: true, out _);
            insert.Bind(0, id);
            insert.Bind(1, m.Task);
            insert.Bind(2, m.Queue);
            insert.Bind(3, (int)state);
            insert.Bind(4, m.Priority);
            insert.Bind(5, m.Args);
            insert.Bind(6, m.MaxAttempts);
            insert.Bind(7, (long)m.Retry.BaseDelay.TotalMilliseconds);
            insert.Bind(8, (long)m.Retry.MaxDelay.TotalMilliseconds);
            insert.Bind(9, m.Retry.Jitter);
            insert.Bind(10, m.Timeout is { } t ? (long)t.TotalMilliseconds : null);
            insert.Bind(11, m.NotBefore?.ToUnixTimeMilliseconds());
            insert.Bind(12, m.ExpiresAt?.ToUnixTimeMilliseconds());
            insert.Bind(13, m.CreatedAt.ToUnixTimeMilliseconds());
            insert.Bind(14, m.IdempotencyKey);
            var stored = RetryHeaders.ToStored(m);
            if (!ReferenceEquals(stored, lastHeaders))
            {
                lastHeaders = stored;
                lastStoredHeaders = StoredForm(stored);
            }
            BindStored(insert, 15, lastStoredHeaders);
            insert.Bind(16, state == TaskState.Queued ? queuedHistory : state == TaskState.Scheduled ? scheduledHistory : $"{(int)state}:{nowMs}");
            if (insert.Execute() == 1 || m.IdempotencyKey is null)
            {
                if (state == TaskState.Queued)
                {
                    readyQueues.Add(m.Queue);
                }
                results.Add(new EnqueueResult(m.Id, true, state));
                continue;
            }
            var existing = w.Statement("SELECT id, state FROM tasks WHERE idempotency_key = $key", "$key");
            existing.Parameters[0].Value = m.IdempotencyKey;
            using var reader = existing.ExecuteReader();
            reader.Read();
            results.Add(new EnqueueResult(ReadId(reader, 0), false, (TaskState)reader.GetInt32(1)));
        }
        return results;
    }

    private void EnsureQueue(SqliteWriter w, string queue, HashSet<string> newQueues)
    {
        if (_knownQueues.ContainsKey(queue) || !newQueues.Add(queue))
        {
            return;
        }
        var command = w.Statement("INSERT INTO queues (name) VALUES ($name) ON CONFLICT (name) DO NOTHING", "$name");
        command.Parameters[0].Value = queue;
        command.ExecuteNonQuery();
    }

    /// <inheritdoc />
    /// <remarks>Returns at once: a worker waits for work on the notifier's ready channel, not here.</remarks>
    public Task<IReadOnlyList<Lease>> FetchAsync(FetchRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        cancellationToken.ThrowIfCancellationRequested();
        // The fetch runs to its commit even if the caller is cancelled meanwhile: its leases must reach the caller.
        return Writer.RunAsync<IReadOnlyList<Lease>>(w => Fetch(w, request));
    }

    private List<Lease> Fetch(SqliteWriter w, FetchRequest request)
    {
        var now = Now();
        var expires = now + (long)request.LeaseDuration.TotalMilliseconds;
        var token = Random.Shared.NextInt64(1, long.MaxValue);
        var leases = new List<Lease>();
        var read = w.Prepared(FetchReadSql, "$queue", "$limit");
        PreparedStatement? lease = null;
        var names = new NameCache();
        foreach (var queue in QueueOrder.For(request))
        {
            var remaining = request.MaxCount - leases.Count;
            if (remaining <= 0)
            {
                break;
            }
            read.Bind(0, queue.Name);
            read.Bind(1, remaining);
            var before = leases.Count;
            try
            {
                while (read.Read())
                {
                    leases.Add(ReadLease(read, token, expires, ref names));
                }
            }
            finally
            {
                read.Reset();
            }
            var count = leases.Count - before;
            if (count == 0)
            {
                continue;
            }
            lease ??= w.Prepared(FetchLeaseSql, "$owner", "$token", "$expires", "$now", "$queue", "$limit");
            lease.Bind(0, request.WorkerId);
            lease.Bind(1, token);
            lease.Bind(2, expires);
            lease.Bind(3, now);
            lease.Bind(4, queue.Name);
            lease.Bind(5, count);
            var leased = lease.Execute();
            if (leased != count)
            {
                // Cannot happen inside the writer's transaction; a lease handed out for a row not leased would break fencing.
                throw new InvalidOperationException($"The fetch read {count} ready tasks of queue '{queue.Name}' and leased {leased}.");
            }
        }
        return leases;
    }

    /// <summary>The task and queue names and the headers of the last row read: rows of one fetch mostly share them
    /// (the tasks of one enqueue carry its trace context), so each is decoded once per run of rows that repeat it,
    /// instead of once per row.</summary>
    private struct NameCache
    {
        private string? _task;
        private string? _queue;
        // The last headers' stored bytes, in a buffer kept for the fetch (grown when a row's are longer).
        private byte[]? _headerBytes;
        private int _headerLength;
        private IReadOnlyDictionary<string, string>? _headers;

        /// <summary>The last row's retry policy, shared by the next rows that store the same one.</summary>
        public RetryPolicyReuse Retry;

        /// <summary>The headers stored as <paramref name="utf8"/>: the last row's instance when its bytes are the same
        /// (headers are read-only, so messages may share them).</summary>
        public IReadOnlyDictionary<string, string>? Headers(ReadOnlySpan<byte> utf8)
        {
            if (_headerBytes is null || !utf8.SequenceEqual(_headerBytes.AsSpan(0, _headerLength)))
            {
                _headers = StoredHeaders.ParseUtf8(utf8);
                if (_headerBytes is null || _headerBytes.Length < utf8.Length)
                {
                    _headerBytes = new byte[Math.Max(utf8.Length, 64)];
                }
                utf8.CopyTo(_headerBytes);
                _headerLength = utf8.Length;
            }
            return _headers;
        }

        public string Task(PreparedStatement row, int column) => Reuse(row.GetBytes(column), ref _task);

        public string Queue(PreparedStatement row, int column) => Reuse(row.GetBytes(column), ref _queue);

        private static string Reuse(ReadOnlySpan<byte> utf8, ref string? last)
        {
            if (last is null || !SameAscii(utf8, last))
            {
                last = System.Text.Encoding.UTF8.GetString(utf8);
            }
            return last;
        }

        // False for any non-ASCII byte: such a name is decoded again, which is correct, only slower.
        private static bool SameAscii(ReadOnlySpan<byte> utf8, string text)
        {
            if (utf8.Length != text.Length)
            {
                return false;
            }
            for (var i = 0; i < utf8.Length; i++)
            {
                if (utf8[i] >= 0x80 || utf8[i] != text[i])
                {
                    return false;
                }
            }
            return true;
        }
    }

    private static Lease ReadLease(PreparedStatement r, long token, long expires, ref NameCache names)
    {
        var (retry, headers) = RetryHeaders.FromStored(
            names.Retry.Get(r.GetInt64(10), r.GetInt64(11), r.GetDouble(12)),
            r.IsNull(15) ? null : names.Headers(r.GetBytes(15)));
        var message = new TaskMessage
        {
            Id = new Guid(r.GetBytes(1), bigEndian: true),
            Task = names.Task(r, 2),
            Queue = names.Queue(r, 3),
            Priority = r.GetInt32(4),
            Args = r.GetString(5),
            NotBefore = r.GetNullableInt64(6) is { } notBefore ? FromMs(notBefore) : null,
            ExpiresAt = r.GetNullableInt64(7) is { } expiresAt ? FromMs(expiresAt) : null,
            MaxAttempts = r.GetInt32(9),
            Retry = retry,
            Timeout = r.GetNullableInt64(13) is { } timeout ? TimeSpan.FromMilliseconds(timeout) : null,
            IdempotencyKey = r.GetString(14),
            Headers = headers,
            CreatedAt = FromMs(r.GetInt64(16)),
        };
        return new Lease(message, token, r.GetInt32(8) + 1, r.GetInt64(17) != 0, FromMs(expires)) { RecordStartFirst = r.GetInt64(18) > 0 };
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<CompletionOverride>> CompleteAsync(IReadOnlyList<Completion> completions, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(completions);
        if (completions.Count == 0)
        {
            return NothingOverridden;
        }
        List<string>? released = null;
        // Workers hear of steps the completions released once the commit made them durable.
        return Writer.RunAsync(w => Complete(w, completions, ref released), () =>
        {
            if (released is not null)
            {
                foreach (var queue in released)
                {
                    _notifier.Ready(queue);
                }
            }
        });
    }

    internal const string WorkflowReadySql = "SELECT queue FROM workflow_ready";
    internal const string WorkflowReadyClearSql = "DELETE FROM workflow_ready";

    // The answer of a batch settled as asked, shared.
    private static readonly Task<IReadOnlyList<CompletionOverride>> NothingOverridden = Task.FromResult(CompletionOverride.None);

    private static IReadOnlyList<CompletionOverride> Complete(SqliteWriter w, IReadOnlyList<Completion> completions, ref List<string>? released)
    {
        var overrides = CompleteRows(w, completions, ref released);
        // The workflow trigger writes the queues of the steps it released here: nearly always empty, read in the same
        // transaction as the completions so that a rolled-back batch wakes nobody. Read, then emptied only when it holds
        // any: a DELETE … RETURNING builds two temporary b-trees on every run, empty table or not.
        var ready = w.Prepared(WorkflowReadySql);
        var before = released?.Count ?? 0;
        try
        {
            while (ready.Read())
            {
                (released ??= []).Add(ready.GetString(0)!);
            }
        }
        finally
        {
            ready.Reset();
        }
        if ((released?.Count ?? 0) > before)
        {
            w.Prepared(WorkflowReadyClearSql).Execute();
        }
        return overrides;
    }

    /// <summary>Writes the completions; returns those not settled as asked (<see cref="CompletionOverride"/>).</summary>
    private static IReadOnlyList<CompletionOverride> CompleteRows(SqliteWriter w, IReadOnlyList<Completion> completions, ref List<string>? released)
    {
        var command = w.Prepared(CompleteSql, CompleteParameters);
        PreparedStatement? success = null;
        PreparedStatement? retry = null;
        PreparedStatement? step = null;
        PreparedStatement? stepRetry = null;
        PreparedStatement? stepSuccess = null;
        StepSuccesses? successes = null;
        List<CompletionOverride>? overrides = null;
        Span<byte> id = stackalloc byte[16];
        foreach (var c in completions)
        {
            c.Lease.TaskId.TryWriteBytes(id, bigEndian: true, out _);
            var rows = 0;
            // The state a retry got, when it changed a row.
            TaskState? retried = null;
            if (c.Kind == CompletionKind.Retry)
            {
                retry ??= w.Prepared(CompleteRetrySql, CompleteParameters);
                BindCompletion(retry, c, id);
                try
                {
                    if (retry.Read())
                    {
                        rows = 1;
                        retried = (TaskState)retry.GetInt32(0);
                    }
                }
                finally
                {
                    retry.Reset();
                }
            }
            else if (c.Kind == CompletionKind.Succeeded && c.Error is null && !c.WorkflowStep)
            {
                success ??= w.Prepared(CompleteSuccessSql, CompleteSuccessParameters);
                success.Bind(0, c.Result);
                success.Bind(1, c.At.ToUnixTimeMilliseconds());
                success.Bind(2, id);
                success.Bind(3, c.Lease.Token);
                rows = success.Execute();
            }
            // A step's success (by the worker's hint) skips the plain task's statement, which would change nothing.
            else if (!(c.WorkflowStep && c.Kind == CompletionKind.Succeeded))
            {
                BindCompletion(command, c, id);
                rows = command.Execute();
            }
            if (rows == 0 && c.Kind == CompletionKind.Succeeded)
            {
                // A workflow step's success (or a lease no longer held, which this changes nothing for).
                stepSuccess ??= w.Prepared(CompleteStepSuccessSql, CompleteParameters);
                BindCompletion(stepSuccess, c, id);
                try
                {
                    if (stepSuccess.Read())
                    {
                        var workflow = new Guid(stepSuccess.GetBytes(0), bigEndian: true);
                        stepSuccess.Reset();
                        (successes ??= new StepSuccesses()).Add(w, id, workflow, c.At.ToUnixTimeMilliseconds());
                        rows = 1;
                    }
                }
                finally
                {
                    stepSuccess.Reset();
                }
            }
            if (rows == 0 && c.WorkflowStep && c.Kind == CompletionKind.Succeeded)
            {
                // The hint was wrong (the task is not a step): the plain task's statement after all.
                BindCompletion(command, c, id);
                rows = command.Execute();
            }
            else if (rows == 0 && c.Kind == CompletionKind.Retry)
            {
                // A workflow step's retry (or a lease no longer held): one that the retried steps of its workflow hold
                // back waits for them in pending, no longer active, counted after the successes before it.
                successes?.Flush(w, ref released);
                stepRetry ??= w.Prepared(CompleteStepRetrySql, CompleteParameters);
                BindCompletion(stepRetry, c, id);
                byte[]? heldBack = null;
                try
                {
                    if (stepRetry.Read())
                    {
                        rows = 1;
                        retried = (TaskState)stepRetry.GetInt32(0);
                        if (retried == TaskState.Pending)
                        {
                            heldBack = stepRetry.GetBytes(1).ToArray();
                        }
                    }
                }
                finally
                {
                    stepRetry.Reset();
                }
                if (heldBack is not null)
                {
                    HeldBack(w, heldBack, c.At.ToUnixTimeMilliseconds());
                }
            }
            else if (rows == 0 && c.Kind != CompletionKind.Succeeded)
            {
                // A workflow step's other outcome (or a lease no longer held): naming workflow_id runs the step trigger,
                // which must see the successes before it.
                successes?.Flush(w, ref released);
                step ??= w.Prepared(CompleteStepSql, CompleteParameters);
                BindCompletion(step, c, id);
                rows = step.Execute();
            }
            if (rows == 0)
            {
                (overrides ??= []).Add(CompletionOverride.Ignored(c.Lease));
            }
            else if (retried is { } state && state != TaskState.Retrying)
            {
                (overrides ??= []).Add(new CompletionOverride(c.Lease, state));
            }
        }
        successes?.Flush(w, ref released);
        return overrides ?? CompletionOverride.None;
    }

    private static void BindCompletion(PreparedStatement command, Completion c, ReadOnlySpan<byte> id)
    {
        var state = StoredStates.AfterCompletion(c.Kind);
        var at = c.At.ToUnixTimeMilliseconds();
        command.Bind(0, (int)state);
        command.Bind(1, c.Result);
        command.Bind(2, c.Error is null ? null : JsonSerializer.Serialize(c.Error, ConveyorJson.Options));
        command.Bind(3, c.Error is null ? null : JsonSerializer.Serialize(new AttemptError(c.Attempt, c.At, c.Error), ConveyorJson.Options));
        command.Bind(4, c.Kind == CompletionKind.Retry ? (c.RetryAt ?? c.At).ToUnixTimeMilliseconds() : null);
        command.Bind(5, state.IsTerminal() ? at : null);
        command.Bind(6, at);
        command.Bind(7, id);
        command.Bind(8, c.Lease.Token);
        command.Bind(9, c.Unstarted && c.Kind == CompletionKind.Retry ? 1 : 0);
        var setHeaders = c.Kind == CompletionKind.Retry && c.Headers is not null;
        command.Bind(10, setHeaders ? 1 : 0);
        BindStored(command, 11, setHeaders ? StoredForm(c.Headers) : null);
    }

    /// <summary><paramref name="headers"/> as SQLite stores them: the compact binary form when they carry a trace context
    /// (26 bytes where its JSON takes 73, in a row rewritten at each state change), else their JSON text, or null.</summary>
    private static object? StoredForm(IReadOnlyDictionary<string, string>? headers) =>
        (object?)StoredHeaders.SerializeBinary(headers) ?? StoredHeaders.Serialize(headers);

    private static void BindStored(PreparedStatement statement, int parameter, object? stored)
    {
        if (stored is byte[] binary)
        {
            statement.Bind(parameter, binary);
        }
        else
        {
            statement.Bind(parameter, (string?)stored);
        }
    }

    /// <inheritdoc />
    public Task<LeaseExtension> ExtendLeasesAsync(IReadOnlyList<LeaseRef> leases, TimeSpan duration, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(leases);
        if (leases.Count == 0)
        {
            return Task.FromResult(LeaseExtension.None);
        }
        return Writer.RunAsync(w =>
        {
            var expires = Now() + (long)duration.TotalMilliseconds;
            var command = w.Statement(
                $"UPDATE tasks SET lease_expires = $expires WHERE id = $id AND lease_token = $token AND state = {StoredStates.Running} RETURNING cancel_requested",
                "$expires", "$id", "$token");
            var cancel = new List<Guid>();
            var lost = new List<LeaseRef>();
            foreach (var lease in leases)
            {
                command.Parameters[0].Value = expires;
                command.Parameters[1].Value = IdBytes(lease.TaskId);
                command.Parameters[2].Value = lease.Token;
                using var reader = command.ExecuteReader();
                if (!reader.Read())
                {
                    lost.Add(lease);
                }
                else if (reader.GetInt64(0) != 0)
                {
                    cancel.Add(lease.TaskId);
                }
            }
            return new LeaseExtension(cancel, lost);
        });
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<LeaseRef>> StartAsync(IReadOnlyList<LeaseRef> leases, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(leases);
        if (leases.Count == 0)
        {
            return Task.FromResult<IReadOnlyList<LeaseRef>>([]);
        }
        return Writer.RunAsync<IReadOnlyList<LeaseRef>>(w => Start(w, leases));
    }

    private static List<LeaseRef> Start(SqliteWriter w, IReadOnlyList<LeaseRef> leases)
    {
        var command = w.Prepared(StartSql, "$id", "$token");
        var lost = new List<LeaseRef>();
        Span<byte> id = stackalloc byte[16];
        foreach (var lease in leases)
        {
            lease.TaskId.TryWriteBytes(id, bigEndian: true, out _);
            command.Bind(0, id);
            command.Bind(1, lease.Token);
            if (command.Execute() == 0)
            {
                lost.Add(lease);
            }
        }
        return lost;
    }

    /// <inheritdoc />
    public async Task<LeaseSweep> AbandonLeasesAsync(string workerId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(workerId);
        cancellationToken.ThrowIfCancellationRequested();
        var (ended, ready) = await Writer.RunAsync(w =>
        {
            var command = w.Statement(
                $"UPDATE tasks SET {EndLeaseSet} WHERE state = {StoredStates.Running} AND lease_owner = $owner RETURNING state, id, workflow_id",
                "$now", "$error", "$at", "$lapse", "$owner");
            var now = Now();
            BindLeaseEnd(command, now, lapse: true);
            command.Parameters[4].Value = workerId;
            return SweepLeases(w, command, now);
        }).ConfigureAwait(false);
        if (ready)
        {
            Ready("");
        }
        return ended;
    }

    /// <inheritdoc />
    public async Task<LeaseSweep> ReleaseAsync(IReadOnlyList<LeaseRef> leases, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(leases);
        if (leases.Count == 0)
        {
            return LeaseSweep.None;
        }
        var (sweep, ready) = await Writer.RunAsync(w =>
        {
            // A lease that never started (and whose cancel was not asked) is a clean hand-back: not a lapse.
            var command = w.Statement(
                $"UPDATE tasks SET {EndLeaseSet} WHERE id = $id AND lease_token = $token AND state = {StoredStates.Running} RETURNING state, id, workflow_id",
                "$now", "$error", "$at", "$lapse", "$id", "$token");
            var now = Now();
            BindLeaseEnd(command, now, lapse: false);
            var any = false;
            var count = 0;
            List<EndedLease>? ended = null;
            foreach (var lease in leases)
            {
                command.Parameters[4].Value = IdBytes(lease.TaskId);
                command.Parameters[5].Value = lease.Token;
                var (one, oneReady) = SweepLeases(w, command, now);
                any |= oneReady;
                count += one.Count;
                if (one.Ended.Count > 0)
                {
                    (ended ??= []).AddRange(one.Ended);
                }
            }
            return (count == 0 ? LeaseSweep.None : new LeaseSweep(count, (IReadOnlyList<EndedLease>?)ended ?? []), any);
        }).ConfigureAwait(false);
        if (ready)
        {
            Ready("");
        }
        return sweep;
    }

    /// <inheritdoc />
    public async Task<LeaseSweep> RequeueExpiredLeasesAsync(CancellationToken cancellationToken)
    {
        var (ended, ready) = await Writer.RunAsync(w =>
        {
            var now = Now();
            var command = w.Statement(
                $"UPDATE tasks SET {EndLeaseSet} WHERE state = {StoredStates.Running} AND lease_expires < $now RETURNING state, id, workflow_id",
                "$now", "$error", "$at", "$lapse");
            BindLeaseEnd(command, now, lapse: true);
            return SweepLeases(w, command, now);
        }).ConfigureAwait(false);
        if (ready)
        {
            Ready("");
        }
        return ended;
    }

    /// <summary>Binds the parameters <see cref="EndLeaseSet"/> names, in its statements' first four places.</summary>
    private static void BindLeaseEnd(SqliteCommand command, long now, bool lapse)
    {
        command.Parameters[0].Value = now;
        command.Parameters[1].Value = LeaseEndings.InterruptedErrorJson;
        command.Parameters[2].Value = LeaseEndings.AtJson(FromMs(now));
        command.Parameters[3].Value = lapse ? 1 : 0;
    }

    /// <summary>Runs a statement that sets <see cref="EndLeaseSet"/> and returns the new state, the id and the workflow:
    /// what the sweep did, and whether any task became ready. A step it took back to pending (<see cref="LeaseHeldBack"/>)
    /// is no longer active in its running workflow, which ends if nothing else is.</summary>
    private static (LeaseSweep Ended, bool Ready) SweepLeases(SqliteWriter w, SqliteCommand command, long now)
    {
        var count = 0;
        var ready = false;
        List<EndedLease>? ended = null;
        List<(Guid Step, byte[] Workflow)>? heldBack = null;
        using (var reader = command.ExecuteReader())
        {
            while (reader.Read())
            {
                count++;
                var state = (TaskState)reader.GetInt32(0);
                if (state == TaskState.Queued)
                {
                    ready = true;
                }
                else if (state is TaskState.Dead or TaskState.Cancelled)
                {
                    (ended ??= []).Add(new EndedLease(ReadId(reader, 1), state));
                }
                else if (state == TaskState.Pending)
                {
                    (heldBack ??= []).Add((ReadId(reader, 1), reader.GetFieldValue<byte[]>(2)));
                }
            }
        }
        foreach (var (step, workflowId) in heldBack ?? [])
        {
            if (HeldBack(w, workflowId, now))
            {
                // Its workflow ended and cancelled it: named as ended, so that the end is announced.
                (ended ??= []).Add(new EndedLease(step, TaskState.Cancelled));
            }
        }
        return (count == 0 ? LeaseSweep.None : new LeaseSweep(count, (IReadOnlyList<EndedLease>?)ended ?? []), ready);
    }

    /// <summary>A step of <paramref name="workflowId"/> went back from running to pending: one active step less, and a
    /// running workflow left with none ends, its pending steps cancelled (what holds them back can never end: a failure
    /// under the policy continue), as <see cref="StepSuccesses"/> ends one. True when it ended.</summary>
    private static bool HeldBack(SqliteWriter w, byte[] workflowId, long now)
    {
        var active = w.Statement("UPDATE workflows SET active_steps = active_steps - 1 WHERE id = $id AND state = 0 RETURNING active_steps", "$id");
        active.Parameters[0].Value = workflowId;
        if (active.ExecuteScalar() is not 0L)
        {
            return false;
        }
        var end = w.Statement("UPDATE workflows SET state = CASE WHEN failed = 1 THEN 2 ELSE 1 END, finished_at = $at WHERE id = $id AND state = 0", "$at", "$id");
        end.Parameters[0].Value = now;
        end.Parameters[1].Value = workflowId;
        end.ExecuteNonQuery();
        var cancel = w.Statement($"""
            UPDATE tasks SET state = {StoredStates.Cancelled}, finished_at = $at, history = history || '|{StoredStates.Cancelled}:' || $at
            WHERE workflow_id = $id AND state = {StoredStates.Pending}
            """, "$at", "$id");
        cancel.Parameters[0].Value = now;
        cancel.Parameters[1].Value = workflowId;
        cancel.ExecuteNonQuery();
        return true;
    }

    /// <inheritdoc />
    public async Task<int> PromoteDueAsync(CancellationToken cancellationToken)
    {
        var count = await Writer.RunAsync(w =>
        {
            var command = w.Statement($"""
                UPDATE tasks SET state = {StoredStates.Queued}, history = history || '|{StoredStates.Queued}:' || $now
                WHERE state IN ({StoredStates.Due}) AND not_before <= $now
                """, "$now");
            command.Parameters[0].Value = Now();
            return command.ExecuteNonQuery();
        }).ConfigureAwait(false);
        if (count > 0)
        {
            Ready("");
        }
        return count;
    }

    /// <inheritdoc />
    public async Task<DateTimeOffset?> NextDueAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand();
        command.CommandText = $"SELECT min(not_before) FROM tasks WHERE state IN ({StoredStates.Due})";
        var value = await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
        return value is long ms ? FromMs(ms) : null;
    }

    /// <inheritdoc />
    public Task<CancelOutcome> CancelAsync(Guid taskId, CancellationToken cancellationToken) =>
        Writer.RunAsync(w =>
        {
            var now = Now();
            var cancel = w.Statement($"""
                UPDATE tasks SET state = {StoredStates.Cancelled}, finished_at = $now, history = history || '|{StoredStates.Cancelled}:' || $now,
                    workflow_id = workflow_id
                WHERE id = $id AND state IN ({StoredStates.Waiting})
                """, "$now", "$id");
            cancel.Parameters[0].Value = now;
            cancel.Parameters[1].Value = IdBytes(taskId);
            if (cancel.ExecuteNonQuery() == 1)
            {
                return CancelOutcome.Cancelled;
            }
            var request = w.Statement($"UPDATE tasks SET cancel_requested = 1 WHERE id = $id AND state = {StoredStates.Running}", "$id");
            request.Parameters[0].Value = IdBytes(taskId);
            if (request.ExecuteNonQuery() == 1)
            {
                return CancelOutcome.Requested;
            }
            var exists = w.Statement("SELECT 1 FROM tasks WHERE id = $id", "$id");
            exists.Parameters[0].Value = IdBytes(taskId);
            return exists.ExecuteScalar() is null ? CancelOutcome.NotFound : CancelOutcome.AlreadyFinished;
        });

    /// <inheritdoc />
    public async Task<RetryOutcome> RetryAsync(Guid taskId, CancellationToken cancellationToken)
    {
        var (outcome, requeuedIn) = await Writer.RunAsync<(RetryOutcome, string)>(w =>
        {
            var now = Now();
            var retry = w.Statement($"""
                UPDATE tasks SET state = {StoredStates.Queued}, attempt = 0, lapses = 0, interruptions = 0, finished_at = NULL, not_before = NULL, expires_at = NULL,
                    cancel_requested = 0, redelivered = 0, history = history || '|{StoredStates.Queued}:' || $now
                WHERE id = $id AND state IN ({StoredStates.Retryable})
                RETURNING queue
                """, "$now", "$id");
            retry.Parameters[0].Value = now;
            retry.Parameters[1].Value = IdBytes(taskId);
            if (retry.ExecuteScalar() is string queue)
            {
                return (RetryOutcome.Requeued, queue);
            }
            var exists = w.Statement("SELECT 1 FROM tasks WHERE id = $id", "$id");
            exists.Parameters[0].Value = IdBytes(taskId);
            return (exists.ExecuteScalar() is null ? RetryOutcome.NotFound : RetryOutcome.NotRetryable, "");
        }).ConfigureAwait(false);
        if (outcome == RetryOutcome.Requeued)
        {
            Ready(requeuedIn);
        }
        return outcome;
    }

    /// <inheritdoc />
    public Task PauseQueueAsync(string queue, CancellationToken cancellationToken) => SetPaused(queue, true);

    /// <inheritdoc />
    public async Task ResumeQueueAsync(string queue, CancellationToken cancellationToken)
    {
        await SetPaused(queue, false).ConfigureAwait(false);
        Ready(queue);
    }

    private Task<int> SetPaused(string queue, bool paused)
    {
        ArgumentException.ThrowIfNullOrEmpty(queue);
        return Writer.RunAsync(w =>
        {
            var command = w.Statement(
                "INSERT INTO queues (name, paused) VALUES ($name, $paused) ON CONFLICT (name) DO UPDATE SET paused = excluded.paused",
                "$name", "$paused");
            command.Parameters[0].Value = queue;
            command.Parameters[1].Value = paused ? 1 : 0;
            return command.ExecuteNonQuery();
        });
    }
}
