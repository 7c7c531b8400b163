using System.Globalization;
using Conveyor.Backends;
using StackExchange.Redis;

namespace Conveyor.Redis;

public sealed partial class RedisBackend : IWorkflowStore
{
    /// <inheritdoc />
    public IWorkflowStore Workflows => this;

    /// <inheritdoc />
    public async Task CreateWorkflowAsync(NewWorkflow workflow, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(workflow);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var args = new RedisValue[7 + (workflow.Steps.Count * RedisScripts.CreateWorkflowFields)];
        args[0] = _base;
        args[1] = Ms(Now());
        args[2] = IdText(workflow.Id);
        args[3] = Opt(workflow.Name);
        args[4] = Ms(workflow.CreatedAt);
        args[5] = WorkflowStepsJson.Write(workflow.StepInfos());
        args[6] = workflow.Steps.Count;
        var i = 7;
        foreach (var step in workflow.Steps)
        {
            var m = step.Message;
            args[i++] = IdText(m.Id);
            args[i++] = m.Task;
            args[i++] = m.Queue;
            args[i++] = m.Priority;
            args[i++] = m.MaxAttempts;
            args[i++] = Opt(m.NotBefore is { } nb ? Ms(nb) : null);
            args[i++] = Opt(m.ExpiresAt is { } exp ? Ms(exp) : null);
            args[i++] = RedisMessageCodec.Encode(m);
            args[i++] = step.After.Count;
            args[i++] = string.Join(',', step.After.Select(IdText));
            args[i++] = (int)step.OnFailure;
            args[i++] = step.IsErrorStep ? 1 : 0;
            args[i++] = (int)step.RunWhen;
        }
        await RunAsync(db, RedisScripts.CreateWorkflow, args).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<StoredWorkflow?> GetWorkflowAsync(Guid workflowId, CancellationToken cancellationToken)
    {
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var fields = await db.HashGetAllAsync(_base + "wf:" + IdText(workflowId)).ConfigureAwait(false);
        return fields.Length == 0 ? null : ReadWorkflow(workflowId, fields).Workflow;
    }

    /// <inheritdoc />
    public async Task<WorkflowSummary?> GetWorkflowSummaryAsync(Guid workflowId, CancellationToken cancellationToken)
    {
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var values = await db.HashGetAsync(_base + "wf:" + IdText(workflowId), ["name", "state", "created", "finished"]).ConfigureAwait(false);
        if (values[1].IsNull)
        {
            return null;
        }
        return new WorkflowSummary(workflowId, values[0].IsNull ? null : (string?)values[0], (WorkflowState)(int)values[1],
            DateTimeOffset.FromUnixTimeMilliseconds((long)values[2]),
            values[3].IsNull ? null : DateTimeOffset.FromUnixTimeMilliseconds((long)values[3]));
    }

    private static (StoredWorkflow Workflow, long Seq) ReadWorkflow(Guid id, HashEntry[] fields)
    {
        var map = fields.ToDictionary(f => (string)f.Name!, f => f.Value);
        return (new StoredWorkflow
        {
            Id = id,
            Name = map.TryGetValue("name", out var name) ? (string?)name : null,
            State = (WorkflowState)(int)map["state"],
            CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds((long)map["created"]),
            FinishedAt = map.TryGetValue("finished", out var finished) ? DateTimeOffset.FromUnixTimeMilliseconds((long)finished) : null,
            Steps = WorkflowStepsJson.Read((string)map["steps"]!),
        }, (long)map["seq"]);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<TaskRecord>> GetWorkflowTasksAsync(Guid workflowId, CancellationToken cancellationToken)
    {
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var ids = await db.SetMembersAsync(_base + "wf:" + IdText(workflowId) + ":tasks").ConfigureAwait(false);
        var batch = db.CreateBatch();
        var reads = ids.Select(id => batch.HashGetAllAsync(_base + "t:" + (string)id!)).ToArray();
        batch.Execute();
        var records = new List<(long Seq, TaskRecord Record)>(ids.Length);
        for (var i = 0; i < ids.Length; i++)
        {
            var fields = await reads[i].ConfigureAwait(false);
            if (fields.Length > 0)
            {
                var (record, seq) = ReadRecord(Guid.Parse((string)ids[i]!), fields);
                records.Add((seq, record));
            }
        }
        return [.. records.OrderBy(r => r.Seq).Select(r => r.Record)];
    }

    /// <inheritdoc />
    /// <remarks>Reads the workflows index newest first in chunks, filtering each workflow's hash here.</remarks>
    public async Task<WorkflowPage> ListWorkflowsAsync(WorkflowQuery query, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(query);
        var limit = Math.Clamp(query.Limit, 1, 1000);
        double before = double.PositiveInfinity;
        if (query.Cursor is { } cursor)
        {
            if (!long.TryParse(cursor, NumberStyles.None, CultureInfo.InvariantCulture, out var seq))
            {
                throw new ArgumentException($"'{cursor}' is not a cursor returned by this API", nameof(query));
            }
            before = seq;
        }
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var items = new List<(long Seq, StoredWorkflow Workflow)>();
        const int chunk = 200;
        while (items.Count <= limit)
        {
            var entries = await db.SortedSetRangeByScoreWithScoresAsync(
                _base + "workflows", double.NegativeInfinity, before, Exclude.Stop, Order.Descending, 0, chunk).ConfigureAwait(false);
            var batch = db.CreateBatch();
            var reads = entries.Select(e => batch.HashGetAllAsync(_base + "wf:" + (string)e.Element!)).ToArray();
            batch.Execute();
            for (var i = 0; i < entries.Length && items.Count <= limit; i++)
            {
                var fields = await reads[i].ConfigureAwait(false);
                if (fields.Length == 0)
                {
                    continue;
                }
                var (workflow, seq) = ReadWorkflow(Guid.Parse((string)entries[i].Element!), fields);
                if ((query.State is null || workflow.State == query.State) && (query.Name is null || workflow.Name == query.Name))
                {
                    items.Add((seq, workflow));
                }
            }
            if (entries.Length < chunk)
            {
                break;
            }
            before = entries[^1].Score;
        }
        var more = items.Count > limit;
        if (more)
        {
            items.RemoveAt(items.Count - 1);
        }
        return new WorkflowPage([.. items.Select(i => i.Workflow)], more ? items[^1].Seq.ToString(CultureInfo.InvariantCulture) : null);
    }

    /// <inheritdoc />
    public async Task<bool> CancelWorkflowAsync(Guid workflowId, CancellationToken cancellationToken)
    {
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        return (int)await RunAsync(db, RedisScripts.CancelWorkflow, [_base, IdText(workflowId), Ms(Now())]).ConfigureAwait(false) == 1;
    }

    /// <inheritdoc />
    public async Task<bool> RetryWorkflowAsync(Guid workflowId, CancellationToken cancellationToken)
    {
        // The step graph never changes once stored: read here, and handed to the script that changes states atomically.
        if (await GetWorkflowAsync(workflowId, cancellationToken).ConfigureAwait(false) is not { } workflow)
        {
            return false;
        }
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var taskOf = workflow.Steps.ToDictionary(s => s.Id, s => s.TaskId, StringComparer.Ordinal);
        var args = new RedisValue[4 + (workflow.Steps.Count * 3)];
        args[0] = _base;
        args[1] = IdText(workflowId);
        args[2] = Ms(Now());
        args[3] = workflow.Steps.Count;
        var i = 4;
        foreach (var step in workflow.Steps)
        {
            args[i++] = IdText(step.TaskId);
            args[i++] = step.IsErrorStep ? 1 : 0;
            args[i++] = string.Join(',', step.After.Select(a => IdText(taskOf[a])));
        }
        return (int)await RunAsync(db, RedisScripts.RetryWorkflow, args).ConfigureAwait(false) == 1;
    }
    /// <summary>Most entries of the workflows index one retention call reads (oldest first).</summary>
    internal const int WorkflowPurgeScan = 5000;

    /// <inheritdoc />
    public async Task<int> PurgeFinishedWorkflowsAsync(DateTimeOffset finishedBefore, int maxCount, CancellationToken cancellationToken)
    {
        if (maxCount <= 0)
        {
            return 0;
        }
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        return (int)await RunAsync(db, RedisScripts.PurgeWorkflows,
            [_base, Ms(finishedBefore), maxCount, Math.Max(WorkflowPurgeScan, maxCount)]).ConfigureAwait(false);
    }
}
