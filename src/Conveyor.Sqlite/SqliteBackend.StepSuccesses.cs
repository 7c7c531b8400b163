using Conveyor.Sql;

namespace Conveyor.Sqlite;

public sealed partial class SqliteBackend
{
    // A step's success, without the step trigger (the statement does not name workflow_id): what it means for its
    // workflow is written by StepSuccesses at the end of the batch, in the same transaction. The trigger runs eight
    // statements per ended step (most of them skipped by guards, each still a sub-program call): a chord's members cost
    // about nine times a plain task. Failures, lease endings and cancels still go through the trigger.
    private const string CompleteStepSuccessSql = $"""
        {CompleteSet}
        WHERE id = $id AND lease_token = $token AND state = {StoredStates.Running} AND workflow_id IS NOT NULL
        RETURNING workflow_id
        """;

    /// <summary>
    /// The steps that succeeded in one completion batch, and what their successes do to their workflows, written at once:
    /// the dependents' counts fall by the number of their dependencies that succeeded here (one update per dependent, not
    /// per edge), those that reach 0 are queued, and each workflow's active count moves once; a workflow with nothing
    /// active left ends, and its steps still pending are cancelled. The same as the step trigger (migration 009) does for a
    /// success, row by row. Written before any completion that goes through the trigger (a failure of a step), so that
    /// the trigger sees the workflow as the successes before it left it.
    /// </summary>
    private sealed class StepSuccesses
    {
        private readonly Dictionary<Guid, int> _endedPerWorkflow = [];
        private readonly Dictionary<Guid, int> _succeededDependencies = [];
        private long _at;

        public bool IsEmpty => _endedPerWorkflow.Count == 0;

        /// <summary>Records a step that succeeded (its row updated by <see cref="CompleteStepSuccessSql"/>).</summary>
        public void Add(SqliteWriter w, ReadOnlySpan<byte> stepId, Guid workflowId, long at)
        {
            _endedPerWorkflow[workflowId] = _endedPerWorkflow.GetValueOrDefault(workflowId) + 1;
            _at = Math.Max(_at, at);
            var edges = w.Prepared("SELECT to_task FROM workflow_edges WHERE from_task = $id", "$id");
            edges.Bind(0, stepId);
            try
            {
                while (edges.Read())
                {
                    var dependent = new Guid(edges.GetBytes(0), bigEndian: true);
                    _succeededDependencies[dependent] = _succeededDependencies.GetValueOrDefault(dependent) + 1;
                }
            }
            finally
            {
                edges.Reset();
            }
        }

        /// <summary>Writes what the recorded successes mean for their workflows; adds the queues of the steps released.</summary>
        public void Flush(SqliteWriter w, ref List<string>? released)
        {
            if (IsEmpty)
            {
                return;
            }
            Span<byte> id = stackalloc byte[16];
            // Dependents of workflows that are no longer running (failed, cancelled) are not released: the release
            // statement reads the workflow's state; but for the steps released when all ended of a workflow failed by a
            // stop (active_steps -1), which the stop spared.
            var release = w.Prepared($"""
                UPDATE tasks SET pending_steps = pending_steps - $n,
                    state = CASE WHEN pending_steps = $n THEN {StoredStates.Queued} ELSE state END,
                    history = CASE WHEN pending_steps = $n THEN history || '|{StoredStates.Queued}:' || $at ELSE history END
                WHERE id = $id AND state = {StoredStates.Pending}
                  AND (SELECT w.state = 0 OR (w.state = 2 AND w.active_steps = -1 AND tasks.run_when = 1) FROM workflows w WHERE w.id = tasks.workflow_id)
                RETURNING state, queue, workflow_id
                """, "$n", "$at", "$id");
            var releasedPerWorkflow = new Dictionary<Guid, int>();
            foreach (var (dependent, count) in _succeededDependencies)
            {
                dependent.TryWriteBytes(id, bigEndian: true, out _);
                release.Bind(0, count);
                release.Bind(1, _at);
                release.Bind(2, id);
                try
                {
                    if (release.Read() && release.GetInt32(0) == (int)TaskState.Queued)
                    {
                        (released ??= []).Add(release.GetString(1)!);
                        var workflow = new Guid(release.GetBytes(2), bigEndian: true);
                        releasedPerWorkflow[workflow] = releasedPerWorkflow.GetValueOrDefault(workflow) + 1;
                    }
                }
                finally
                {
                    release.Reset();
                }
            }
            var active = w.Prepared(
                "UPDATE workflows SET active_steps = active_steps - $ended + $released WHERE id = $id AND state = 0 RETURNING active_steps",
                "$ended", "$released", "$id");
            foreach (var (workflow, ended) in _endedPerWorkflow)
            {
                workflow.TryWriteBytes(id, bigEndian: true, out _);
                active.Bind(0, ended);
                active.Bind(1, releasedPerWorkflow.GetValueOrDefault(workflow));
                active.Bind(2, id);
                bool idle;
                try
                {
                    idle = active.Read() && active.GetInt64(0) == 0;
                }
                finally
                {
                    active.Reset();
                }
                if (idle)
                {
                    End(w, id);
                }
            }
            _endedPerWorkflow.Clear();
            _succeededDependencies.Clear();
            _at = 0;
        }

        // Nothing active: the workflow ends (failed if a step failed under the policy continue), and what is still
        // pending can never run (a step it waits for failed, or it is the error step and no step failed).
        private void End(SqliteWriter w, ReadOnlySpan<byte> workflowId)
        {
            var end = w.Prepared("UPDATE workflows SET state = CASE WHEN failed = 1 THEN 2 ELSE 1 END, finished_at = $at WHERE id = $id AND state = 0", "$at", "$id");
            end.Bind(0, _at);
            end.Bind(1, workflowId);
            end.Execute();
            var cancel = w.Prepared($"""
                UPDATE tasks SET state = {StoredStates.Cancelled}, finished_at = $at, history = history || '|{StoredStates.Cancelled}:' || $at
                WHERE workflow_id = $id AND state = {StoredStates.Pending}
                """, "$at", "$id");
            cancel.Bind(0, _at);
            cancel.Bind(1, workflowId);
            cancel.Execute();
        }
    }
}
