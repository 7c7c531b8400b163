using Conveyor.Backends;

namespace Conveyor.Sqlite;

public sealed partial class SqliteBackend
{
    /// <inheritdoc />
    public async Task<UniqueClaim?> GetUniqueClaimAsync(string key, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT task_id, claimed_at, window_ms FROM unique_keys WHERE key = $key";
        command.Parameters.AddWithValue("$key", key);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            return null;
        }
        return new UniqueClaim(key, new Guid((byte[])reader.GetValue(0), bigEndian: true),
            DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(1)), TimeSpan.FromMilliseconds(reader.GetInt64(2)));
    }

    /// <inheritdoc />
    public Task<bool> TryClaimUniqueKeyAsync(UniqueClaim claim, Guid? replacing, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(claim);
        return Writer.RunAsync(w =>
        {
            var command = replacing is null
                ? w.Statement("INSERT INTO unique_keys (key, task_id, claimed_at, window_ms) VALUES ($key, $task, $at, $window) ON CONFLICT (key) DO NOTHING",
                    "$key", "$task", "$at", "$window")
                : w.Statement("UPDATE unique_keys SET task_id = $task, claimed_at = $at, window_ms = $window WHERE key = $key AND task_id = $old",
                    "$key", "$task", "$at", "$window", "$old");
            command.Parameters[0].Value = claim.Key;
            command.Parameters[1].Value = IdBytes(claim.TaskId);
            command.Parameters[2].Value = claim.ClaimedAt.ToUnixTimeMilliseconds();
            command.Parameters[3].Value = (long)claim.Window.TotalMilliseconds;
            if (replacing is { } old)
            {
                command.Parameters[4].Value = IdBytes(old);
            }
            return command.ExecuteNonQuery() == 1;
        });
    }

    /// <inheritdoc />
    public Task ReleaseUniqueKeyAsync(string key, Guid taskId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        return Writer.RunAsync(w =>
        {
            var command = w.Statement("DELETE FROM unique_keys WHERE key = $key AND task_id = $task", "$key", "$task");
            command.Parameters[0].Value = key;
            command.Parameters[1].Value = IdBytes(taskId);
            return command.ExecuteNonQuery();
        });
    }

    /// <inheritdoc />
    public async Task<UniqueClaimPage> ListUniqueClaimsAsync(string? cursor, int limit, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand();
        // The cursor is the last key listed: key order, so a page is one index range.
        command.CommandText = cursor is null
            ? "SELECT key, task_id, claimed_at, window_ms FROM unique_keys ORDER BY key LIMIT $limit"
            : "SELECT key, task_id, claimed_at, window_ms FROM unique_keys WHERE key > $after ORDER BY key LIMIT $limit";
        command.Parameters.AddWithValue("$limit", limit);
        if (cursor is not null)
        {
            command.Parameters.AddWithValue("$after", cursor);
        }
        var claims = new List<UniqueClaim>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            claims.Add(new UniqueClaim(reader.GetString(0), new Guid((byte[])reader.GetValue(1), bigEndian: true),
                DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(2)), TimeSpan.FromMilliseconds(reader.GetInt64(3))));
        }
        return new UniqueClaimPage(claims, claims.Count < limit ? null : claims[^1].Key);
    }
}
