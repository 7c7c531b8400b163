using Conveyor.Backends;
using Conveyor.Sql;
using Npgsql;

namespace Conveyor.Postgres;

public sealed partial class PostgresBackend
{
    /// <inheritdoc />
    public async Task<TaskRecord?> GetAsync(Guid taskId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        return await TaskRows.GetAsync(connection, _dialect, taskId, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyDictionary<Guid, TaskState>> GetStatesAsync(IReadOnlyCollection<Guid> taskIds, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(taskIds);
        var states = new Dictionary<Guid, TaskState>(taskIds.Count);
        if (taskIds.Count == 0)
        {
            return states;
        }
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, $"SELECT id, state FROM {_tasks} WHERE id = ANY(@ids)");
        command.Parameters.AddWithValue("ids", taskIds.ToArray());
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            states[reader.GetGuid(0)] = (TaskState)reader.GetInt16(1);
        }
        return states;
    }

    /// <inheritdoc />
    public async Task<TaskPage> ListAsync(TaskQuery query, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        return await TaskListing.ListAsync(connection, _dialect, query, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<QueueStats>> GetQueuesAsync(CancellationToken cancellationToken) =>
        GetQueuesAsync(ITaskStore.FinishedCountLimit, cancellationToken);

    /// <inheritdoc />
    public async Task<IReadOnlyList<QueueStats>> GetQueuesAsync(int finishedCountLimit, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(finishedCountLimit, 1);
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        return await TaskListing.GetQueuesAsync(connection, _dialect, finishedCountLimit, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<WaitingTaskCounts> CountWaitingByTaskAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        return await TaskListing.CountWaitingByTaskAsync(connection, _dialect, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyDictionary<string, DateTimeOffset>> GetOldestReadyAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        return await TaskListing.GetOldestReadyAsync(connection, _dialect, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<int> PurgeFinishedAsync(DateTimeOffset finishedBefore, int maxCount, CancellationToken cancellationToken)
    {
        // Bounded batches through the tasks_finished partial index; SKIP LOCKED so a purge never waits on workers.
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, $"""
            DELETE FROM {_tasks} WHERE seq IN (
                SELECT seq FROM {_tasks} WHERE state IN ({StoredStates.Terminal}) AND finished_at < @before
                ORDER BY finished_at LIMIT @max FOR UPDATE SKIP LOCKED)
            """);
        command.Parameters.AddWithValue("before", finishedBefore.ToUnixTimeMilliseconds());
        command.Parameters.AddWithValue("max", maxCount);
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<int> DeleteAsync(IReadOnlyCollection<Guid> taskIds, TaskState state, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(taskIds);
        if (!state.IsTerminal())
        {
            throw new ArgumentOutOfRangeException(nameof(state), state, "Only tasks in a terminal state can be deleted.");
        }
        if (taskIds.Count == 0)
        {
            return 0;
        }
        // One statement through the unique id index; the caller's batch bounds it.
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, $"DELETE FROM {_tasks} WHERE id = ANY(@ids) AND state = @state");
        command.Parameters.AddWithValue("ids", taskIds.ToArray());
        command.Parameters.AddWithValue("state", (short)state);
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }
}
