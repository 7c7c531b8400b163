using Conveyor.Backends;
using Conveyor.Sql;

namespace Conveyor.Sqlite;

public sealed partial class SqliteBackend : IWorkflowStore
{
    private const string InsertStepSql = """
        INSERT INTO tasks (id, task, queue, state, priority, args, max_attempts, retry_base_ms, retry_max_ms, retry_jitter,
            timeout_ms, not_before, expires_at, created_at, headers, history, workflow_id, pending_steps, on_failure, run_when)
        VALUES ($id, $task, $queue, $state, $priority, $args, $max, $base, $maxdelay, $jitter,
            $timeout, $nb, $exp, $created, $headers, $history, $workflow, $pending, $onfailure, $runwhen)
        """;

    /// <inheritdoc />
    public IWorkflowStore Workflows => this;

    /// <inheritdoc />
    public Task CreateWorkflowAsync(NewWorkflow workflow, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(workflow);
        cancellationToken.ThrowIfCancellationRequested();
        var now = _time.GetUtcNow();
        var newQueues = new HashSet<string>(StringComparer.Ordinal);
        var readyQueues = new HashSet<string>(StringComparer.Ordinal);
        // One writer operation: its savepoint makes the workflow all or nothing.
        return Writer.RunAsync(w => InsertWorkflow(w, workflow, now, newQueues, readyQueues), () =>
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

    private int InsertWorkflow(SqliteWriter w, NewWorkflow workflow, DateTimeOffset now, HashSet<string> newQueues, HashSet<string> readyQueues)
    {
        var nowMs = now.ToUnixTimeMilliseconds();
        var workflowId = IdBytes(workflow.Id);
        var insertWorkflow = w.Statement(
            "INSERT INTO workflows (id, name, state, created_at, active_steps, error_task) VALUES ($id, $name, 0, $created, $active, $error)",
            "$id", "$name", "$created", "$active", "$error");
        insertWorkflow.Parameters[0].Value = workflowId;
        insertWorkflow.Parameters[1].Value = Db(workflow.Name);
        insertWorkflow.Parameters[2].Value = workflow.CreatedAt.ToUnixTimeMilliseconds();
        insertWorkflow.Parameters[3].Value = workflow.Steps.Count(s => s.After.Count == 0 && !s.IsErrorStep);
        insertWorkflow.Parameters[4].Value = workflow.Steps.FirstOrDefault(s => s.IsErrorStep) is { } errorStep ? (object)IdBytes(errorStep.Message.Id) : DBNull.Value;
        insertWorkflow.ExecuteNonQuery();
        var insertGraph = w.Statement("INSERT INTO workflow_graphs (id, steps) VALUES ($id, $steps)", "$id", "$steps");
        insertGraph.Parameters[0].Value = workflowId;
        insertGraph.Parameters[1].Value = WorkflowStepsJson.Write(workflow.StepInfos());
        insertGraph.ExecuteNonQuery();
        var insert = w.Prepared(InsertStepSql,
            "$id", "$task", "$queue", "$state", "$priority", "$args", "$max", "$base", "$maxdelay", "$jitter",
            "$timeout", "$nb", "$exp", "$created", "$headers", "$history", "$workflow", "$pending", "$onfailure", "$runwhen");
        var edge = w.Prepared("INSERT INTO workflow_edges (from_task, to_task) VALUES ($from, $to)", "$from", "$to");
        foreach (var step in workflow.Steps)
        {
            var m = step.Message;
            EnsureQueue(w, m.Queue, newQueues);
            var state = step.After.Count == 0 && !step.IsErrorStep ? m.InitialState(now) : TaskState.Pending;
            var id = IdBytes(m.Id);
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
            BindStored(insert, 14, StoredForm(RetryHeaders.ToStored(m)));
            insert.Bind(15, $"{(int)state}:{nowMs}");
            insert.Bind(16, workflowId);
            insert.Bind(17, step.After.Count);
            insert.Bind(18, (int)step.OnFailure);
            insert.Bind(19, (int)step.RunWhen);
            insert.Execute();
            if (state == TaskState.Queued)
            {
                readyQueues.Add(m.Queue);
            }
            foreach (var dependency in step.After)
            {
                edge.Bind(0, IdBytes(dependency));
                edge.Bind(1, id);
                edge.Execute();
            }
        }
        return workflow.Steps.Count;
    }

    /// <inheritdoc />
    public async Task<StoredWorkflow?> GetWorkflowAsync(Guid workflowId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        return await WorkflowRows.GetAsync(connection, SqliteDialect.Instance, workflowId, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<WorkflowSummary?> GetWorkflowSummaryAsync(Guid workflowId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        return await WorkflowRows.GetSummaryAsync(connection, SqliteDialect.Instance, workflowId, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<TaskRecord>> GetWorkflowTasksAsync(Guid workflowId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        return await WorkflowRows.GetTasksAsync(connection, SqliteDialect.Instance, workflowId, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<WorkflowPage> ListWorkflowsAsync(WorkflowQuery query, CancellationToken cancellationToken)
    {
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        return await WorkflowRows.ListAsync(connection, SqliteDialect.Instance, query, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public Task<bool> CancelWorkflowAsync(Guid workflowId, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return Writer.RunAsync(w =>
        {
            var now = Now();
            var id = IdBytes(workflowId);
            var workflow = w.Statement("UPDATE workflows SET state = 3, finished_at = $now WHERE id = $id AND state = 0", "$now", "$id");
            workflow.Parameters[0].Value = now;
            workflow.Parameters[1].Value = id;
            if (workflow.ExecuteNonQuery() == 0)
            {
                return false;
            }
            // The workflow is cancelled first, so the trigger that these cancellations fire changes it no more.
            var steps = w.Statement($"""
                UPDATE tasks SET state = {StoredStates.Cancelled}, finished_at = $now, history = history || '|{StoredStates.Cancelled}:' || $now,
                    workflow_id = workflow_id
                WHERE workflow_id = $id AND state IN ({StoredStates.Waiting})
                """, "$now", "$id");
            steps.Parameters[0].Value = now;
            steps.Parameters[1].Value = id;
            steps.ExecuteNonQuery();
            var running = w.Statement($"UPDATE tasks SET cancel_requested = 1 WHERE workflow_id = $id AND state = {StoredStates.Running}", "$id");
            running.Parameters[0].Value = id;
            running.ExecuteNonQuery();
            return true;
        });
    }

    /// <inheritdoc />
    public async Task<bool> RetryWorkflowAsync(Guid workflowId, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var queues = new List<string>();
        var retried = await Writer.RunAsync(w =>
        {
            var now = Now();
            var id = IdBytes(workflowId);
            var workflow = w.Statement("UPDATE workflows SET state = 0, failed = 0, finished_at = NULL WHERE id = $id AND state IN (2, 3)", "$id");
            workflow.Parameters[0].Value = id;
            if (workflow.ExecuteNonQuery() == 0)
            {
                return false;
            }
            // Its failed steps (and its error step if it ended) back to pending first, with a fresh set of attempts. Then
            // every step that waits, the error step excepted, is counted again (WorkflowRetrySql: the steps it runs after
            // that hold it back): one released but not leased (scheduled, queued, retrying: spared by a stop) that one
            // holds back goes back to pending, so that it cannot run before the retried steps end (a leased one runs on,
            // its count kept: if its lease ends without an outcome while it is above 0, EndLeaseSet counts again and
            // takes it back to pending when they still hold it back);
            // every pending one takes its count; those at 0 are queued. The trigger does not fire: no state here is an end.
            var reset = w.Statement($"""
                UPDATE tasks SET state = {StoredStates.Pending}, pending_steps = 0, attempt = 0, lapses = 0, interruptions = 0, finished_at = NULL,
                    not_before = NULL, expires_at = NULL, cancel_requested = 0, redelivered = 0, history = history || '|{StoredStates.Pending}:' || $now
                WHERE workflow_id = $id AND (state IN ({StoredStates.Retryable})
                    OR (state = {StoredStates.Succeeded} AND id IS (SELECT error_task FROM workflows WHERE id = $id)))
                """, "$now", "$id");
            reset.Parameters[0].Value = now;
            reset.Parameters[1].Value = id;
            reset.ExecuteNonQuery();
            var leased = w.Statement($"""
                UPDATE tasks SET pending_steps = {WorkflowRetrySql.HeldBackBy("tasks", "workflow_edges", "tasks")}
                WHERE workflow_id = $id AND state IN ({WorkflowRetrySql.Released}, {StoredStates.Running}) AND id IS NOT (SELECT error_task FROM workflows WHERE id = $id)
                """, "$id");
            leased.Parameters[0].Value = id;
            leased.ExecuteNonQuery();
            var held = w.Statement($"""
                UPDATE tasks SET state = {StoredStates.Pending}, not_before = NULL, history = history || '|{StoredStates.Pending}:' || $now
                WHERE workflow_id = $id AND state IN ({WorkflowRetrySql.Released}) AND id IS NOT (SELECT error_task FROM workflows WHERE id = $id)
                  AND {WorkflowRetrySql.HeldBackBy("tasks", "workflow_edges", "tasks")} > 0
                """, "$now", "$id");
            held.Parameters[0].Value = now;
            held.Parameters[1].Value = id;
            held.ExecuteNonQuery();
            var count = w.Statement($"""
                UPDATE tasks SET pending_steps = {WorkflowRetrySql.HeldBackBy("tasks", "workflow_edges", "tasks")}
                WHERE workflow_id = $id AND state = {StoredStates.Pending} AND id IS NOT (SELECT error_task FROM workflows WHERE id = $id)
                """, "$id");
            count.Parameters[0].Value = id;
            count.ExecuteNonQuery();
            var queue = w.Statement($"""
                UPDATE tasks SET state = {StoredStates.Queued}, history = history || '|{StoredStates.Queued}:' || $now
                WHERE workflow_id = $id AND state = {StoredStates.Pending} AND pending_steps = 0 AND id IS NOT (SELECT error_task FROM workflows WHERE id = $id)
                RETURNING queue
                """, "$now", "$id");
            queue.Parameters[0].Value = now;
            queue.Parameters[1].Value = id;
            using (var reader = queue.ExecuteReader())
            {
                while (reader.Read())
                {
                    queues.Add(reader.GetString(0));
                }
            }
            var active = w.Statement($"""
                UPDATE workflows SET active_steps = (SELECT count(*) FROM tasks WHERE workflow_id = $id
                    AND state IN ({StoredStates.Scheduled}, {StoredStates.Queued}, {StoredStates.Running}, {StoredStates.Retrying}))
                WHERE id = $id
                """, "$id");
            active.Parameters[0].Value = id;
            active.ExecuteNonQuery();
            return true;
        }).ConfigureAwait(false);
        foreach (var queue in queues.Distinct(StringComparer.Ordinal))
        {
            Ready(queue);
        }
        return retried;
    }
    /// <inheritdoc />
    public Task<int> PurgeFinishedWorkflowsAsync(DateTimeOffset finishedBefore, int maxCount, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return Writer.RunAsync(w =>
        {
            // Ended before the bound, and no step unfinished (a step that ran on after a stop or a cancel keeps it).
            var select = w.Statement($"""
                SELECT w.id, g.steps FROM workflows w LEFT JOIN workflow_graphs g ON g.id = w.id
                WHERE w.state IN ({(int)WorkflowState.Succeeded}, {(int)WorkflowState.Failed}, {(int)WorkflowState.Cancelled})
                  AND w.finished_at < $before
                  AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.workflow_id = w.id AND t.state NOT IN ({StoredStates.Terminal}))
                LIMIT $max
                """, "$before", "$max");
            select.Parameters[0].Value = finishedBefore.ToUnixTimeMilliseconds();
            select.Parameters[1].Value = maxCount;
            var found = new List<(byte[] Id, string? Steps)>();
            using (var reader = select.ExecuteReader())
            {
                while (reader.Read())
                {
                    found.Add((reader.GetFieldValue<byte[]>(0), reader.IsDBNull(1) ? null : reader.GetString(1)));
                }
            }
            if (found.Count == 0)
            {
                return 0;
            }
            var tasks = w.Prepared("DELETE FROM tasks WHERE workflow_id = $id", "$id");
            var edges = w.Prepared("DELETE FROM workflow_edges WHERE from_task = $id", "$id");
            var graph = w.Prepared("DELETE FROM workflow_graphs WHERE id = $id", "$id");
            var workflow = w.Prepared("DELETE FROM workflows WHERE id = $id", "$id");
            foreach (var (id, steps) in found)
            {
                tasks.Bind(0, id);
                tasks.Execute();
                // The edges are keyed by task id: the graph names the steps' tasks, whether or not task retention took them.
                foreach (var step in steps is null ? [] : WorkflowStepsJson.Read(steps))
                {
                    edges.Bind(0, IdBytes(step.TaskId));
                    edges.Execute();
                }
                graph.Bind(0, id);
                graph.Execute();
                workflow.Bind(0, id);
                workflow.Execute();
            }
            return found.Count;
        });
    }
}
