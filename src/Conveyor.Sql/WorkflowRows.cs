using System.Data.Common;
using System.Globalization;
using System.Text;
using Conveyor.Backends;

namespace Conveyor.Sql;

/// <summary>
/// The reading half of <see cref="IWorkflowStore"/> for a SQL store, written once: the <c>workflows</c> table (state as an
/// integer, times as Unix milliseconds, the step graph as <see cref="WorkflowStepsJson"/> text) and the tasks of a
/// workflow's steps (<c>tasks.workflow_id</c>). The writing half (create, cancel, and the trigger that releases steps) is
/// each engine's, in its migration <c>007_workflows.sql</c>.
/// </summary>
public static class WorkflowRows
{
    /// <summary>The columns <see cref="Read"/> expects, in this order; <c>seq</c> first (the listing's cursor). They are
    /// read <see cref="From"/> the workflow (<c>w</c>) and its step graph (<c>g</c>).</summary>
    public const string Columns = "w.seq, w.id, w.name, w.state, w.created_at, w.finished_at, g.steps";

    /// <summary>The tables <see cref="Columns"/> are read from. The graph, written once, has a table of its own: the
    /// workflows row is updated at the end of every step, and a large graph in it would be copied each time.</summary>
    public static string From(SqlDialect dialect)
    {
        ArgumentNullException.ThrowIfNull(dialect);
        return $"{dialect.Table("workflows")} w JOIN {dialect.Table("workflow_graphs")} g ON g.id = w.id";
    }

    /// <summary>The workflow of the reader's current row, selected with <see cref="Columns"/>.</summary>
    public static StoredWorkflow Read(DbDataReader r, SqlDialect dialect)
    {
        ArgumentNullException.ThrowIfNull(r);
        ArgumentNullException.ThrowIfNull(dialect);
        return new StoredWorkflow
        {
            Id = dialect.ReadTaskId(r, 1),
            Name = r.IsDBNull(2) ? null : r.GetString(2),
            State = (WorkflowState)Convert.ToInt32(r.GetValue(3), CultureInfo.InvariantCulture),
            CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(4)),
            FinishedAt = r.IsDBNull(5) ? null : DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(5)),
            Steps = WorkflowStepsJson.Read(r.GetString(6)),
        };
    }

    /// <summary>The workflow with this id, or null.</summary>
    public static async Task<StoredWorkflow?> GetAsync(DbConnection connection, SqlDialect dialect, Guid workflowId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(dialect);
        await using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {Columns} FROM {From(dialect)} WHERE w.id = {dialect.Parameter("id")}";
        dialect.AddParameter(command, "id", dialect.TaskIdValue(workflowId));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        return await reader.ReadAsync(cancellationToken).ConfigureAwait(false) ? Read(reader, dialect) : null;
    }

    /// <summary>The workflow's state and times (its row alone, not its graph), or null.</summary>
    public static async Task<WorkflowSummary?> GetSummaryAsync(DbConnection connection, SqlDialect dialect, Guid workflowId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(dialect);
        await using var command = connection.CreateCommand();
        command.CommandText = $"SELECT id, name, state, created_at, finished_at FROM {dialect.Table("workflows")} WHERE id = {dialect.Parameter("id")}";
        dialect.AddParameter(command, "id", dialect.TaskIdValue(workflowId));
        await using var r = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        if (!await r.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            return null;
        }
        return new WorkflowSummary(
            dialect.ReadTaskId(r, 0),
            r.IsDBNull(1) ? null : r.GetString(1),
            (WorkflowState)Convert.ToInt32(r.GetValue(2), CultureInfo.InvariantCulture),
            DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(3)),
            r.IsDBNull(4) ? null : DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(4)));
    }

    /// <summary>The tasks of the workflow's steps, in creation order.</summary>
    public static async Task<IReadOnlyList<TaskRecord>> GetTasksAsync(DbConnection connection, SqlDialect dialect, Guid workflowId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(dialect);
        await using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {TaskRows.Columns} FROM {dialect.Table("tasks")} WHERE workflow_id = {dialect.Parameter("id")} ORDER BY seq";
        dialect.AddParameter(command, "id", dialect.TaskIdValue(workflowId));
        var tasks = new List<TaskRecord>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            tasks.Add(TaskRows.Read(reader, dialect));
        }
        return tasks;
    }

    /// <summary>One page of workflows matching <paramref name="query"/>, newest first; the cursor is the last row's
    /// <c>seq</c>, as the task listing's is.</summary>
    /// <exception cref="ArgumentException">The cursor is not one this listing handed out.</exception>
    public static async Task<WorkflowPage> ListAsync(DbConnection connection, SqlDialect dialect, WorkflowQuery query, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(dialect);
        ArgumentNullException.ThrowIfNull(query);
        var limit = Math.Clamp(query.Limit, 1, TaskListing.MaxLimit);
        await using var command = connection.CreateCommand();
        var sql = new StringBuilder($"SELECT {Columns} FROM {From(dialect)} WHERE 1 = 1");
        if (query.State is { } state)
        {
            sql.Append(" AND w.state = ").Append(dialect.Parameter("state"));
            dialect.AddParameter(command, "state", (int)state);
        }
        if (query.Name is { } name)
        {
            sql.Append(" AND w.name = ").Append(dialect.Parameter("name"));
            dialect.AddParameter(command, "name", name);
        }
        if (query.Cursor is { } cursor)
        {
            sql.Append(" AND w.seq < ").Append(dialect.Parameter("before"));
            dialect.AddParameter(command, "before", TaskListing.ParseCursor(cursor));
        }
        sql.Append(" ORDER BY w.seq DESC ").Append(dialect.Limit(dialect.Parameter("limit")));
        dialect.AddParameter(command, "limit", limit + 1);
        command.CommandText = sql.ToString();
        var items = new List<StoredWorkflow>();
        long last = 0;
        var more = false;
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            if (items.Count == limit)
            {
                more = true;
                break;
            }
            items.Add(Read(reader, dialect));
            last = reader.GetInt64(0);
        }
        return new WorkflowPage(items, more ? TaskListing.FormatCursor(last) : null);
    }
}
