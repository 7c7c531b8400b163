using System.Data.Common;
using System.Text.Json;
using Conveyor.Backends;

namespace Conveyor.Sql;

/// <summary>
/// A <see cref="TaskRecord"/> from a row of <c>tasks</c>: the column list every store statement selects, and the
/// mapping of its values, written once for every SQL backend. Times are <c>bigint</c> Unix milliseconds, JSON is text.
/// </summary>
public static class TaskRows
{
    /// <summary>The columns <see cref="Read"/> expects, in this order; <c>seq</c> first, so a page's cursor is column 0.</summary>
    public const string Columns = """
        seq, id, task, queue, state, priority, args, result, error, errors, attempt, max_attempts, created_at, not_before,
        expires_at, started_at, finished_at, idempotency_key, headers, lease_owner, cancel_requested, history,
        retry_base_ms, retry_max_ms, retry_jitter
        """;

    /// <summary>Ordinal of <c>seq</c> in <see cref="Columns"/>.</summary>
    public const int SequenceOrdinal = 0;

    /// <summary>The record of the reader's current row, selected with <see cref="Columns"/>.</summary>
    public static TaskRecord Read(DbDataReader r, SqlDialect dialect)
    {
        ArgumentNullException.ThrowIfNull(r);
        ArgumentNullException.ThrowIfNull(dialect);
        var errorJson = ReadString(r, 8);
        // The policy's exception lists are stored as reserved headers (RetryHeaders), left out of the record's headers.
        var (retry, headers) = RetryHeaders.FromStored(
            new RetryPolicy(TimeSpan.FromMilliseconds(r.GetInt64(22)), TimeSpan.FromMilliseconds(r.GetInt64(23)), r.GetDouble(24)),
            ReadHeaders(r, 18));
        return new TaskRecord
        {
            Id = dialect.ReadTaskId(r, 1),
            Task = r.GetString(2),
            Queue = r.GetString(3),
            State = dialect.ReadState(r, 4),
            Priority = r.GetInt32(5),
            Args = ReadString(r, 6),
            Result = ReadString(r, 7),
            Error = errorJson is null ? null : JsonSerializer.Deserialize<TaskError>(errorJson, ConveyorJson.Options),
            Errors = TaskHistoryText.ParseErrors(ReadString(r, 9)),
            Attempts = r.GetInt32(10),
            MaxAttempts = r.GetInt32(11),
            Retry = retry,
            CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(12)),
            NotBefore = ReadTime(r, 13),
            ExpiresAt = ReadTime(r, 14),
            StartedAt = ReadTime(r, 15),
            FinishedAt = ReadTime(r, 16),
            IdempotencyKey = ReadString(r, 17),
            Headers = headers,
            WorkerId = ReadString(r, 19),
            CancelRequested = dialect.ReadFlag(r, 20),
            Transitions = TaskHistoryText.ParseTransitions(r.GetString(21)),
        };
    }

    /// <summary>The task with this id, or null.</summary>
    public static async Task<TaskRecord?> GetAsync(DbConnection connection, SqlDialect dialect, Guid taskId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(dialect);
        await using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {Columns} FROM {dialect.Table("tasks")} WHERE id = {dialect.Parameter("id")}";
        dialect.AddParameter(command, "id", dialect.TaskIdValue(taskId));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        return await reader.ReadAsync(cancellationToken).ConfigureAwait(false) ? Read(reader, dialect) : null;
    }

    private static string? ReadString(DbDataReader r, int ordinal) => r.IsDBNull(ordinal) ? null : r.GetString(ordinal);

    // Text on PostgreSQL; on SQLite, bytes where the headers are in StoredHeaders' binary form.
    private static IReadOnlyDictionary<string, string>? ReadHeaders(DbDataReader r, int ordinal) =>
        r.IsDBNull(ordinal) ? null : r.GetValue(ordinal) switch
        {
            byte[] binary => StoredHeaders.ParseUtf8(binary),
            var text => StoredHeaders.Parse((string)text),
        };

    private static DateTimeOffset? ReadTime(DbDataReader r, int ordinal) =>
        r.IsDBNull(ordinal) ? null : DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(ordinal));
}
