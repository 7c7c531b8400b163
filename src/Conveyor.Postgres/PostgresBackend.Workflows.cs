using Conveyor.Backends;
using Conveyor.Sql;
using Npgsql;

namespace Conveyor.Postgres;

public sealed partial class PostgresBackend : IWorkflowStore
{
    /// <inheritdoc />
    public IWorkflowStore Workflows => this;

    /// <inheritdoc />
    public async Task CreateWorkflowAsync(NewWorkflow workflow, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(workflow);
        var now = _time.GetUtcNow();
        var nowMs = now.ToUnixTimeMilliseconds();
        var n = workflow.Steps.Count;
        var ids = new Guid[n];
        var tasks = new string[n];
        var queues = new string[n];
        var states = new short[n];
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
        var headers = new string?[n];
        var histories = new string[n];
        var pending = new int[n];
        var onFailure = new short[n];
        var runWhen = new short[n];
        var active = 0;
        Guid? errorTask = null;
        var edgeFrom = new List<Guid>();
        var edgeTo = new List<Guid>();
        var readyQueues = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < n; i++)
        {
            var step = workflow.Steps[i];
            var m = step.Message;
            var state = step.After.Count == 0 && !step.IsErrorStep ? m.InitialState(now) : TaskState.Pending;
            if (state != TaskState.Pending)
            {
                active++;
            }
            if (step.IsErrorStep)
            {
                errorTask = m.Id;
            }
            onFailure[i] = (short)step.OnFailure;
            runWhen[i] = (short)step.RunWhen;
            ids[i] = m.Id;
            tasks[i] = m.Task;
            queues[i] = m.Queue;
            states[i] = (short)state;
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
            headers[i] = StoredHeaders.Serialize(RetryHeaders.ToStored(m));
            histories[i] = $"{(int)state}:{nowMs}";
            pending[i] = step.After.Count;
            foreach (var dependency in step.After)
            {
                edgeFrom.Add(dependency);
                edgeTo.Add(m.Id);
            }
            if (state == TaskState.Queued)
            {
                readyQueues.Add(m.Queue);
            }
        }

        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        // One round trip and transaction (a batch is one implicit transaction): the workflow, its queues, steps and edges.
        await using var batch = new NpgsqlBatch(connection);
        var queuesCommand = new NpgsqlBatchCommand($"INSERT INTO {_queues} (name) SELECT DISTINCT unnest(@names::text[]) ON CONFLICT (name) DO NOTHING");
        queuesCommand.Parameters.AddWithValue("names", queues.Distinct(StringComparer.Ordinal).ToArray());
        batch.BatchCommands.Add(queuesCommand);
        var workflowCommand = new NpgsqlBatchCommand(
            $"""
            WITH graph AS (INSERT INTO {_dialect.Table("workflow_graphs")} (id, steps) VALUES (@id, @steps))
            INSERT INTO {_workflows} (id, name, state, created_at, active_steps, error_task) VALUES (@id, @name, 0, @created, @active, @error)
            """);
        workflowCommand.Parameters.AddWithValue("id", workflow.Id);
        workflowCommand.Parameters.AddWithValue("name", (object?)workflow.Name ?? DBNull.Value);
        workflowCommand.Parameters.AddWithValue("created", workflow.CreatedAt.ToUnixTimeMilliseconds());
        workflowCommand.Parameters.AddWithValue("active", active);
        workflowCommand.Parameters.AddWithValue("error", errorTask is { } e ? (object)e : DBNull.Value);
        workflowCommand.Parameters.AddWithValue("steps", WorkflowStepsJson.Write(workflow.StepInfos()));
        batch.BatchCommands.Add(workflowCommand);
        var insert = new NpgsqlBatchCommand($"""
            INSERT INTO {_tasks} (id, task, queue, state, priority, args, max_attempts, retry_base_ms, retry_max_ms, retry_jitter,
                timeout_ms, not_before, expires_at, created_at, headers, history, workflow_id, pending_steps, on_failure, run_when)
            SELECT u.id, u.task, u.queue, u.state, u.priority, u.args, u.max, u.base, u.maxdelay, u.jitter,
                u.timeout, u.nb, u.exp, u.created, u.headers, u.history, @workflow, u.pending, u.onfailure, u.runwhen
            FROM unnest(@id::uuid[], @task::text[], @queue::text[], @state::smallint[], @priority::int[], @args::text[], @max::int[],
                @base::bigint[], @maxdelay::bigint[], @jitter::float8[], @timeout::bigint[], @nb::bigint[], @exp::bigint[],
                @created::bigint[], @headers::text[], @history::text[], @pending::int[], @onfailure::smallint[], @runwhen::smallint[])
                WITH ORDINALITY AS u(id, task, queue, state, priority, args, max, base, maxdelay, jitter, timeout, nb, exp, created, headers, history, pending, onfailure, runwhen, ord)
            ORDER BY u.ord
            """);
        var p = insert.Parameters;
        p.AddWithValue("workflow", workflow.Id);
        p.AddWithValue("id", ids);
        p.AddWithValue("task", tasks);
        p.AddWithValue("queue", queues);
        p.AddWithValue("state", states);
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
        p.AddWithValue("headers", headers);
        p.AddWithValue("history", histories);
        p.AddWithValue("pending", pending);
        p.AddWithValue("onfailure", onFailure);
        p.AddWithValue("runwhen", runWhen);
        batch.BatchCommands.Add(insert);
        if (edgeFrom.Count > 0)
        {
            var edges = new NpgsqlBatchCommand($"INSERT INTO {_workflowEdges} (from_task, to_task) SELECT * FROM unnest(@from::uuid[], @to::uuid[])");
            edges.Parameters.AddWithValue("from", edgeFrom.ToArray());
            edges.Parameters.AddWithValue("to", edgeTo.ToArray());
            batch.BatchCommands.Add(edges);
        }
        await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        foreach (var queue in readyQueues)
        {
            _knownQueues.TryAdd(queue, true);
            _notifier.Ready(queue);
        }
    }

    /// <inheritdoc />
    public async Task<StoredWorkflow?> GetWorkflowAsync(Guid workflowId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        return await WorkflowRows.GetAsync(connection, _dialect, workflowId, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<WorkflowSummary?> GetWorkflowSummaryAsync(Guid workflowId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        return await WorkflowRows.GetSummaryAsync(connection, _dialect, workflowId, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<TaskRecord>> GetWorkflowTasksAsync(Guid workflowId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        return await WorkflowRows.GetTasksAsync(connection, _dialect, workflowId, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<WorkflowPage> ListWorkflowsAsync(WorkflowQuery query, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        return await WorkflowRows.ListAsync(connection, _dialect, query, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<bool> CancelWorkflowAsync(Guid workflowId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        // One statement, so one transaction: the workflow is marked first (its row's lock orders this against the steps'
        // trigger), then its waiting steps are cancelled (the trigger finds the workflow cancelled and changes it no
        // more) and its running ones flagged.
        await using var command = Command(connection, $"""
            WITH w AS (
                UPDATE {_workflows} SET state = 3, finished_at = @now WHERE id = @id AND state = 0 RETURNING id),
            cancelled AS (
                UPDATE {_tasks} SET state = {StoredStates.Cancelled}, finished_at = @now, history = history || '|{StoredStates.Cancelled}:' || @now
                WHERE workflow_id = (SELECT id FROM w) AND state IN ({StoredStates.Waiting}) RETURNING 1),
            requested AS (
                UPDATE {_tasks} SET cancel_requested = true WHERE workflow_id = (SELECT id FROM w) AND state = {StoredStates.Running} RETURNING 1)
            SELECT (SELECT count(*) FROM w), (SELECT count(*) FROM cancelled), (SELECT count(*) FROM requested)
            """);
        command.Parameters.AddWithValue("now", Now());
        command.Parameters.AddWithValue("id", workflowId);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        return reader.GetInt64(0) > 0;
    }

    /// <inheritdoc />
    public async Task<bool> RetryWorkflowAsync(Guid workflowId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        // The workflow's row first (locked, as the trigger locks it), then its failed steps (and its error step if it
        // ended) back to pending with a fresh set of attempts. Then every step that waits, the error step excepted, is
        // counted again (WorkflowRetrySql: the steps it runs after that hold it back): one released but not leased
        // (scheduled, queued, retrying: spared by a stop) that one holds back goes back to pending, so that it cannot run
        // before the retried steps end (a leased one runs on; a fetch that holds its row is waited for, and the row then
        // read again); every pending one takes its count; those at 0 are queued. A leased one (and a released one, which
        // the next statement may take back) takes its count first and stays leased: the ends lower it (CountedStep), and its lease, if it ends without an outcome while the count is
        // above 0, takes it back to pending (LeaseHeldBack); counted before the released ones, so that a lease that ends
        // between the two statements is counted by the second. The trigger does not fire: no state here is an end.
        await using (var workflow = Command(connection, $"UPDATE {_workflows} SET state = 0, failed = false, finished_at = NULL WHERE id = @id AND state IN (2, 3) RETURNING error_task"))
        {
            workflow.Parameters.AddWithValue("id", workflowId);
            await using var reader = await workflow.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                return false;
            }
        }
        await using var steps = Command(connection, $"""
            WITH w AS (SELECT error_task FROM {_workflows} WHERE id = @id)
            UPDATE {_tasks} SET state = {StoredStates.Pending}, pending_steps = 0, attempt = 0, lapses = 0, interruptions = 0, finished_at = NULL,
                not_before = NULL, expires_at = NULL, cancel_requested = false, redelivered = false, history = history || '|{StoredStates.Pending}:' || @now
            WHERE workflow_id = @id AND (state IN ({StoredStates.Retryable})
                OR (state = {StoredStates.Succeeded} AND id IS NOT DISTINCT FROM (SELECT error_task FROM w)));
            UPDATE {_tasks} t SET pending_steps = {WorkflowRetrySql.HeldBackBy(_tasks, _workflowEdges, "t")}
            WHERE t.workflow_id = @id AND t.state IN ({WorkflowRetrySql.Released}, {StoredStates.Running})
              AND t.id IS DISTINCT FROM (SELECT error_task FROM {_workflows} WHERE id = @id);
            UPDATE {_tasks} t SET state = {StoredStates.Pending}, not_before = NULL, history = t.history || '|{StoredStates.Pending}:' || @now
            WHERE t.workflow_id = @id AND t.state IN ({WorkflowRetrySql.Released}) AND t.id IS DISTINCT FROM (SELECT error_task FROM {_workflows} WHERE id = @id)
              AND {WorkflowRetrySql.HeldBackBy(_tasks, _workflowEdges, "t")} > 0;
            UPDATE {_tasks} t SET pending_steps = {WorkflowRetrySql.HeldBackBy(_tasks, _workflowEdges, "t")}
            WHERE t.workflow_id = @id AND t.state = {StoredStates.Pending} AND t.id IS DISTINCT FROM (SELECT error_task FROM {_workflows} WHERE id = @id);
            UPDATE {_tasks} SET state = {StoredStates.Queued}, history = history || '|{StoredStates.Queued}:' || @now
            WHERE workflow_id = @id AND state = {StoredStates.Pending} AND pending_steps = 0
              AND id IS DISTINCT FROM (SELECT error_task FROM {_workflows} WHERE id = @id)
            RETURNING queue;
            """);
        steps.Parameters.AddWithValue("id", workflowId);
        steps.Parameters.AddWithValue("now", Now());
        var queues = new HashSet<string>(StringComparer.Ordinal);
        await using (var reader = await steps.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            do
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    queues.Add(reader.GetString(0));
                }
            }
            while (await reader.NextResultAsync(cancellationToken).ConfigureAwait(false));
        }
        await using (var active = Command(connection, $"""
            UPDATE {_workflows} SET active_steps = (SELECT count(*) FROM {_tasks} WHERE workflow_id = @id
                AND state IN ({StoredStates.Scheduled}, {StoredStates.Queued}, {StoredStates.Running}, {StoredStates.Retrying}))
            WHERE id = @id
            """))
        {
            active.Parameters.AddWithValue("id", workflowId);
            await active.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        foreach (var queue in queues)
        {
            _knownQueues.TryAdd(queue, true);
            _notifier.Ready(queue);
        }
        return true;
    }
    /// <inheritdoc />
    public async Task<int> PurgeFinishedWorkflowsAsync(DateTimeOffset finishedBefore, int maxCount, CancellationToken cancellationToken)
    {
        // One statement: the workflows (locked, SKIP LOCKED so that a retry or a step's end is never waited for, and
        // checked again once locked), their graphs, their steps' tasks and the edges the graphs name (by task id, whether
        // or not task retention took the tasks).
        var finished = $"{(int)WorkflowState.Succeeded}, {(int)WorkflowState.Failed}, {(int)WorkflowState.Cancelled}";
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, $"""
            WITH gone AS (
                DELETE FROM {_workflows} w WHERE w.id IN (
                    SELECT c.id FROM {_workflows} c
                    WHERE c.state IN ({finished}) AND c.finished_at < @before
                      AND NOT EXISTS (SELECT 1 FROM {_tasks} t WHERE t.workflow_id = c.id AND t.state NOT IN ({StoredStates.Terminal}))
                    LIMIT @max FOR UPDATE SKIP LOCKED)
                RETURNING w.id),
            graphs AS (DELETE FROM {_dialect.Table("workflow_graphs")} g USING gone WHERE g.id = gone.id RETURNING g.steps),
            steps AS (DELETE FROM {_tasks} t USING gone WHERE t.workflow_id = gone.id),
            edges AS (
                DELETE FROM {_workflowEdges} e USING graphs, jsonb_array_elements(graphs.steps::jsonb) s
                WHERE e.from_task = (s ->> 'taskId')::uuid)
            SELECT count(*)::int FROM gone
            """);
        command.Parameters.AddWithValue("before", finishedBefore.ToUnixTimeMilliseconds());
        command.Parameters.AddWithValue("max", maxCount);
        return (int)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
    }
}
