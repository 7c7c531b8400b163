using Conveyor.Backends;

namespace Conveyor.Postgres;

public sealed partial class PostgresBackend
{
    /// <inheritdoc />
    public async Task<UniqueClaim?> GetUniqueClaimAsync(string key, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, $"SELECT task_id, claimed_at, window_ms FROM {_uniqueKeys} WHERE key = @key");
        command.Parameters.AddWithValue("key", key);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            return null;
        }
        return new UniqueClaim(key, reader.GetGuid(0), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(1)), TimeSpan.FromMilliseconds(reader.GetInt64(2)));
    }

    /// <inheritdoc />
    public async Task<bool> TryClaimUniqueKeyAsync(UniqueClaim claim, Guid? replacing, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(claim);
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, replacing is null
            ? $"INSERT INTO {_uniqueKeys} (key, task_id, claimed_at, window_ms) VALUES (@key, @task, @at, @window) ON CONFLICT (key) DO NOTHING"
            : $"UPDATE {_uniqueKeys} SET task_id = @task, claimed_at = @at, window_ms = @window WHERE key = @key AND task_id = @old");
        command.Parameters.AddWithValue("key", claim.Key);
        command.Parameters.AddWithValue("task", claim.TaskId);
        command.Parameters.AddWithValue("at", claim.ClaimedAt.ToUnixTimeMilliseconds());
        command.Parameters.AddWithValue("window", (long)claim.Window.TotalMilliseconds);
        if (replacing is { } old)
        {
            command.Parameters.AddWithValue("old", old);
        }
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 1;
    }

    /// <inheritdoc />
    public async Task ReleaseUniqueKeyAsync(string key, Guid taskId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, $"DELETE FROM {_uniqueKeys} WHERE key = @key AND task_id = @task");
        command.Parameters.AddWithValue("key", key);
        command.Parameters.AddWithValue("task", taskId);
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<UniqueClaimPage> ListUniqueClaimsAsync(string? cursor, int limit, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        // The cursor is the last key listed: key order, so a page is one index range.
        await using var command = Command(connection, cursor is null
            ? $"SELECT key, task_id, claimed_at, window_ms FROM {_uniqueKeys} ORDER BY key LIMIT @limit"
            : $"SELECT key, task_id, claimed_at, window_ms FROM {_uniqueKeys} WHERE key > @after ORDER BY key LIMIT @limit");
        command.Parameters.AddWithValue("limit", limit);
        if (cursor is not null)
        {
            command.Parameters.AddWithValue("after", cursor);
        }
        var claims = new List<UniqueClaim>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            claims.Add(new UniqueClaim(reader.GetString(0), reader.GetGuid(1), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(2)),
                TimeSpan.FromMilliseconds(reader.GetInt64(3))));
        }
        return new UniqueClaimPage(claims, claims.Count < limit ? null : claims[^1].Key);
    }
}
