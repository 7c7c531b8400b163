using System.Globalization;
using System.Text;
using System.Text.Json;
using Conveyor.Backends;
using Npgsql;

namespace Conveyor.Postgres;

public sealed partial class PostgresBackend
{
    private const string RecordColumns = """
        seq, id, task, queue, state, priority, args, result, error, errors, attempt, max_attempts, created_at, not_before,
        expires_at, started_at, finished_at, idempotency_key, headers, lease_owner, cancel_requested, history
        """;

    /// <inheritdoc />
    public async Task<TaskRecord?> GetAsync(Guid taskId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, $"SELECT {RecordColumns} FROM tasks WHERE id = @id");
        command.Parameters.AddWithValue("id", taskId);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        return await reader.ReadAsync(cancellationToken).ConfigureAwait(false) ? ReadRecord(reader) : null;
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
        await using var command = Command(connection, "SELECT id, state FROM tasks WHERE id = ANY(@ids)");
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
        ArgumentNullException.ThrowIfNull(query);
        var limit = Math.Clamp(query.Limit, 1, 1000);
        var sql = new StringBuilder($"SELECT {RecordColumns} FROM tasks WHERE true");
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, "");
        if (query.State is { } state)
        {
            sql.Append(" AND state = @state");
            command.Parameters.AddWithValue("state", (short)state);
        }
        if (query.Task is { } task)
        {
            sql.Append(" AND task = @task");
            command.Parameters.AddWithValue("task", task);
        }
        if (query.Queue is { } queue)
        {
            sql.Append(" AND queue = @queue");
            command.Parameters.AddWithValue("queue", queue);
        }
        if (query.Cursor is { } cursor)
        {
            if (!long.TryParse(cursor, NumberStyles.None, CultureInfo.InvariantCulture, out var before))
            {
                throw new ArgumentException($"'{cursor}' is not a cursor returned by this API", nameof(query));
            }
            sql.Append(" AND seq < @before");
            command.Parameters.AddWithValue("before", before);
        }
        sql.Append(" ORDER BY seq DESC LIMIT @limit");
        command.Parameters.AddWithValue("limit", limit + 1);
        command.CommandText = sql.ToString();
        var items = new List<TaskRecord>(limit);
        long lastSeq = 0;
        var more = false;
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            if (items.Count == limit)
            {
                more = true;
                break;
            }
            items.Add(ReadRecord(reader));
            lastSeq = reader.GetInt64(0);
        }
        return new TaskPage(items, more ? lastSeq.ToString(CultureInfo.InvariantCulture) : null);
    }

    private static TaskRecord ReadRecord(NpgsqlDataReader r)
    {
        var errorJson = ReadString(r, 8);
        var errorsText = ReadString(r, 9);
        var errors = TaskHistoryText.ParseErrors(errorsText);
        return new TaskRecord
        {
            Id = r.GetGuid(1),
            Task = r.GetString(2),
            Queue = r.GetString(3),
            State = (TaskState)r.GetInt16(4),
            Priority = r.GetInt32(5),
            Args = ReadString(r, 6),
            Result = ReadString(r, 7),
            Error = errorJson is null ? null : JsonSerializer.Deserialize<TaskError>(errorJson, ConveyorJson.Options),
            Errors = errors,
            Attempts = r.GetInt32(10),
            MaxAttempts = r.GetInt32(11),
            CreatedAt = FromMs(r.GetInt64(12)),
            NotBefore = FromMs(r, 13),
            ExpiresAt = FromMs(r, 14),
            StartedAt = FromMs(r, 15),
            FinishedAt = FromMs(r, 16),
            IdempotencyKey = ReadString(r, 17),
            Headers = DeserializeHeaders(ReadString(r, 18)),
            WorkerId = ReadString(r, 19),
            CancelRequested = r.GetBoolean(20),
            Transitions = TaskHistoryText.ParseTransitions(r.GetString(21)),
        };
    }


    /// <inheritdoc />
    public async Task<IReadOnlyList<QueueStats>> GetQueuesAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        var queues = new SortedDictionary<string, (bool Paused, Dictionary<TaskState, long> Counts)>(StringComparer.Ordinal);
        await using (var command = Command(connection, "SELECT name, paused FROM queues"))
        {
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                queues[reader.GetString(0)] = (reader.GetBoolean(1), new Dictionary<TaskState, long>());
            }
        }
        await using (var command = Command(connection, "SELECT queue, state, count(*) FROM tasks GROUP BY queue, state"))
        {
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                var name = reader.GetString(0);
                if (!queues.TryGetValue(name, out var entry))
                {
                    entry = (false, new Dictionary<TaskState, long>());
                    queues[name] = entry;
                }
                entry.Counts[(TaskState)reader.GetInt16(1)] = reader.GetInt64(2);
            }
        }
        return queues.Select(q => new QueueStats { Name = q.Key, Paused = q.Value.Paused, Counts = q.Value.Counts }).ToList();
    }

    /// <inheritdoc />
    public async Task<int> PurgeFinishedAsync(DateTimeOffset finishedBefore, int maxCount, CancellationToken cancellationToken)
    {
        // Bounded batches through the tasks_finished partial index; SKIP LOCKED so a purge never waits on workers.
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, """
            DELETE FROM tasks WHERE seq IN (
                SELECT seq FROM tasks WHERE state IN (3, 5, 6, 7) AND finished_at < @before
                ORDER BY finished_at LIMIT @max FOR UPDATE SKIP LOCKED)
            """);
        command.Parameters.AddWithValue("before", finishedBefore.ToUnixTimeMilliseconds());
        command.Parameters.AddWithValue("max", maxCount);
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }
}
