using System.Text.Json;
using Conveyor.Backends;

namespace Conveyor.Postgres;

public sealed partial class PostgresBackend
{
    /// <inheritdoc />
    public async Task HeartbeatAsync(WorkerInfo worker, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(worker);
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, $"""
            INSERT INTO {_workers} (id, info, heartbeat_at) VALUES (@id, @info, @at)
            ON CONFLICT (id) DO UPDATE SET info = excluded.info, heartbeat_at = excluded.heartbeat_at
            """);
        command.Parameters.AddWithValue("id", worker.Id);
        command.Parameters.AddWithValue("info", JsonSerializer.Serialize(worker, ConveyorJson.Options));
        command.Parameters.AddWithValue("at", worker.HeartbeatAt.ToUnixTimeMilliseconds());
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task RemoveWorkerAsync(string workerId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, $"DELETE FROM {_workers} WHERE id = @id");
        command.Parameters.AddWithValue("id", workerId);
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<WorkerInfo>> ListWorkersAsync(DateTimeOffset seenSince, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, $"SELECT info FROM {_workers} WHERE heartbeat_at >= @since ORDER BY id");
        command.Parameters.AddWithValue("since", seenSince.ToUnixTimeMilliseconds());
        var workers = new List<WorkerInfo>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            workers.Add(JsonSerializer.Deserialize<WorkerInfo>(reader.GetString(0), ConveyorJson.Options)!);
        }
        return workers;
    }

    /// <inheritdoc />
    public async Task<bool> TryAcquireLeadershipAsync(string name, string owner, TimeSpan ttl, CancellationToken cancellationToken)
    {
        var now = Now();
        // A row, not an advisory lock: it survives pooled connections and takes its expiry from our clock.
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, $"""
            INSERT INTO {_leaders} AS l (name, owner, expires_at) VALUES (@name, @owner, @expires)
            ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
            WHERE l.owner = excluded.owner OR l.expires_at < @now
            """);
        command.Parameters.AddWithValue("name", name);
        command.Parameters.AddWithValue("owner", owner);
        command.Parameters.AddWithValue("expires", now + (long)ttl.TotalMilliseconds);
        command.Parameters.AddWithValue("now", now);
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 1;
    }

    /// <inheritdoc />
    public async Task ReleaseLeadershipAsync(string name, string owner, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, $"DELETE FROM {_leaders} WHERE name = @name AND owner = @owner");
        command.Parameters.AddWithValue("name", name);
        command.Parameters.AddWithValue("owner", owner);
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }
}
