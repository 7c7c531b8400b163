using System.Globalization;
using System.Text;
using System.Text.Json;
using Conveyor.Backends;
using Microsoft.Data.Sqlite;

namespace Conveyor.Sqlite;

public sealed partial class SqliteBackend
{
    private const string RecordColumns = """
        seq, id, task, queue, state, priority, args, result, error, errors, attempt, max_attempts, created_at, not_before,
        expires_at, started_at, finished_at, idempotency_key, headers, lease_owner, cancel_requested, history
        """;

    /// <inheritdoc />
    public async Task<TaskRecord?> GetAsync(Guid taskId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {RecordColumns} FROM tasks WHERE id = $id";
        command.Parameters.AddWithValue("$id", IdBytes(taskId));
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
        ArgumentNullException.ThrowIfNull(query);
        var limit = Math.Clamp(query.Limit, 1, 1000);
        var sql = new StringBuilder($"SELECT {RecordColumns} FROM tasks WHERE 1 = 1");
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand();
        if (query.State is { } state)
        {
            sql.Append(" AND state = $state");
            command.Parameters.AddWithValue("$state", (int)state);
        }
        if (query.Task is { } task)
        {
            sql.Append(" AND task = $task");
            command.Parameters.AddWithValue("$task", task);
        }
        if (query.Queue is { } queue)
        {
            sql.Append(" AND queue = $queue");
            command.Parameters.AddWithValue("$queue", queue);
        }
        if (query.Cursor is { } cursor)
        {
            if (!long.TryParse(cursor, NumberStyles.None, CultureInfo.InvariantCulture, out var before))
            {
                throw new ArgumentException($"'{cursor}' is not a cursor returned by this API", nameof(query));
            }
            sql.Append(" AND seq < $before");
            command.Parameters.AddWithValue("$before", before);
        }
        sql.Append(" ORDER BY seq DESC LIMIT $limit");
        command.Parameters.AddWithValue("$limit", limit + 1);
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

    private static TaskRecord ReadRecord(SqliteDataReader r)
    {
        var errorJson = ReadString(r, 8);
        var errorsText = ReadString(r, 9);
        var errors = TaskHistoryText.ParseErrors(errorsText);
        return new TaskRecord
        {
            Id = ReadId(r, 1),
            Task = r.GetString(2),
            Queue = r.GetString(3),
            State = (TaskState)r.GetInt32(4),
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
            CancelRequested = r.GetInt64(20) != 0,
            Transitions = TaskHistoryText.ParseTransitions(r.GetString(21)),
        };
    }


    /// <inheritdoc />
    public async Task<IReadOnlyList<QueueStats>> GetQueuesAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        var queues = new SortedDictionary<string, (bool Paused, Dictionary<TaskState, long> Counts)>(StringComparer.Ordinal);
        await using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT name, paused FROM queues";
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                queues[reader.GetString(0)] = (reader.GetInt64(1) != 0, new Dictionary<TaskState, long>());
            }
        }
        await using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT queue, state, count(*) FROM tasks GROUP BY queue, state";
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                var name = reader.GetString(0);
                if (!queues.TryGetValue(name, out var entry))
                {
                    entry = (false, new Dictionary<TaskState, long>());
                    queues[name] = entry;
                }
                entry.Counts[(TaskState)reader.GetInt32(1)] = reader.GetInt64(2);
            }
        }
        return queues.Select(q => new QueueStats { Name = q.Key, Paused = q.Value.Paused, Counts = q.Value.Counts }).ToList();
    }

    /// <inheritdoc />
    public Task<int> PurgeFinishedAsync(DateTimeOffset finishedBefore, int maxCount, CancellationToken cancellationToken) =>
        Writer.RunAsync(w =>
        {
            var command = w.Statement("""
                DELETE FROM tasks WHERE seq IN (
                    SELECT seq FROM tasks WHERE state IN (3, 5, 6, 7) AND finished_at < $before LIMIT $max)
                """, "$before", "$max");
            command.Parameters[0].Value = finishedBefore.ToUnixTimeMilliseconds();
            command.Parameters[1].Value = maxCount;
            return command.ExecuteNonQuery();
        });
}
