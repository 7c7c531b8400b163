using System.Globalization;
using Conveyor.Backends;
using Conveyor.Sql;
using Microsoft.Data.Sqlite;

namespace Conveyor.Sqlite;

public sealed partial class SqliteBackend
{
    /// <inheritdoc />
    public async Task<TaskRecord?> GetAsync(Guid taskId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        return await TaskRows.GetAsync(connection, SqliteDialect.Instance, taskId, cancellationToken).ConfigureAwait(false);
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
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        // Chunks of 500 ids: well under SQLite's limit on bound parameters.
        foreach (var chunk in taskIds.Chunk(500))
        {
            await using var command = connection.CreateCommand();
            var names = new string[chunk.Length];
            for (var i = 0; i < chunk.Length; i++)
            {
                names[i] = "$i" + i.ToString(CultureInfo.InvariantCulture);
                command.Parameters.AddWithValue(names[i], IdBytes(chunk[i]));
            }
            command.CommandText = $"SELECT id, state FROM tasks WHERE id IN ({string.Join(", ", names)})";
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                states[ReadId(reader, 0)] = (TaskState)reader.GetInt32(1);
            }
        }
        return states;
    }

    /// <inheritdoc />
    public async Task<TaskPage> ListAsync(TaskQuery query, CancellationToken cancellationToken)
    {
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        return await TaskListing.ListAsync(connection, SqliteDialect.Instance, query, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<QueueStats>> GetQueuesAsync(CancellationToken cancellationToken) =>
        GetQueuesAsync(ITaskStore.FinishedCountLimit, cancellationToken);

    /// <inheritdoc />
    public async Task<IReadOnlyList<QueueStats>> GetQueuesAsync(int finishedCountLimit, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(finishedCountLimit, 1);
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        return await TaskListing.GetQueuesAsync(connection, SqliteDialect.Instance, finishedCountLimit, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<WaitingTaskCounts> CountWaitingByTaskAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        return await TaskListing.CountWaitingByTaskAsync(connection, SqliteDialect.Instance, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyDictionary<string, DateTimeOffset>> GetOldestReadyAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        return await TaskListing.GetOldestReadyAsync(connection, SqliteDialect.Instance, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public Task<int> PurgeFinishedAsync(DateTimeOffset finishedBefore, int maxCount, CancellationToken cancellationToken) =>
        Writer.RunAsync(w =>
        {
            var command = w.Statement($"""
                DELETE FROM tasks WHERE seq IN (
                    SELECT seq FROM tasks WHERE state IN ({StoredStates.Terminal}) AND finished_at < $before LIMIT $max)
                """, "$before", "$max");
            command.Parameters[0].Value = finishedBefore.ToUnixTimeMilliseconds();
            command.Parameters[1].Value = maxCount;
            return command.ExecuteNonQuery();
        });

    /// <inheritdoc />
    public Task<int> DeleteAsync(IReadOnlyCollection<Guid> taskIds, TaskState state, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(taskIds);
        if (!state.IsTerminal())
        {
            throw new ArgumentOutOfRangeException(nameof(state), state, "Only tasks in a terminal state can be deleted.");
        }
        if (taskIds.Count == 0)
        {
            return Task.FromResult(0);
        }
        cancellationToken.ThrowIfCancellationRequested();
        // One prepared statement per id, all in the writer's one transaction: the caller's batch bounds it.
        return Writer.RunAsync(w =>
        {
            var command = w.Prepared("DELETE FROM tasks WHERE id = $id AND state = $state", "$id", "$state");
            var deleted = 0;
            Span<byte> id = stackalloc byte[16];
            foreach (var taskId in taskIds)
            {
                taskId.TryWriteBytes(id, bigEndian: true, out _);
                command.Bind(0, id);
                command.Bind(1, (int)state);
                deleted += command.Execute();
            }
            return deleted;
        });
    }
}
