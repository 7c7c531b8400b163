using System.Text.Json;
using Conveyor.Backends;

namespace Conveyor.Sqlite;

public sealed partial class SqliteBackend
{
    /// <inheritdoc />
    public Task HeartbeatAsync(WorkerInfo worker, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(worker);
        var info = JsonSerializer.Serialize(worker, ConveyorJson.Options);
        return Writer.RunAsync(w =>
        {
            var command = w.Statement("""
                INSERT INTO workers (id, info, heartbeat_at) VALUES ($id, $info, $at)
                ON CONFLICT (id) DO UPDATE SET info = excluded.info, heartbeat_at = excluded.heartbeat_at
                """, "$id", "$info", "$at");
            command.Parameters[0].Value = worker.Id;
            command.Parameters[1].Value = info;
            command.Parameters[2].Value = worker.HeartbeatAt.ToUnixTimeMilliseconds();
            return command.ExecuteNonQuery();
        });
    }

    /// <inheritdoc />
    public Task RemoveWorkerAsync(string workerId, CancellationToken cancellationToken) =>
        Writer.RunAsync(w =>
        {
            var command = w.Statement("DELETE FROM workers WHERE id = $id", "$id");
            command.Parameters[0].Value = workerId;
            return command.ExecuteNonQuery();
        });

    /// <inheritdoc />
    public async Task<IReadOnlyList<WorkerInfo>> ListWorkersAsync(DateTimeOffset seenSince, CancellationToken cancellationToken)
    {
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT info FROM workers WHERE heartbeat_at >= $since ORDER BY id";
        command.Parameters.AddWithValue("$since", seenSince.ToUnixTimeMilliseconds());
        var workers = new List<WorkerInfo>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            workers.Add(JsonSerializer.Deserialize<WorkerInfo>(reader.GetString(0), ConveyorJson.Options)!);
        }
        return workers;
    }

    /// <inheritdoc />
    public Task<bool> TryAcquireLeadershipAsync(string name, string owner, TimeSpan ttl, CancellationToken cancellationToken) =>
        Writer.RunAsync(w =>
        {
            var now = Now();
            var upsert = w.Statement("""
                INSERT INTO leaders (name, owner, expires_at) VALUES ($name, $owner, $expires)
                ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
                WHERE leaders.owner = excluded.owner OR leaders.expires_at < $now
                """, "$name", "$owner", "$expires", "$now");
            upsert.Parameters[0].Value = name;
            upsert.Parameters[1].Value = owner;
            upsert.Parameters[2].Value = now + (long)ttl.TotalMilliseconds;
            upsert.Parameters[3].Value = now;
            return upsert.ExecuteNonQuery() == 1;
        });

    /// <inheritdoc />
    public Task ReleaseLeadershipAsync(string name, string owner, CancellationToken cancellationToken) =>
        Writer.RunAsync(w =>
        {
            var command = w.Statement("DELETE FROM leaders WHERE name = $name AND owner = $owner", "$name", "$owner");
            command.Parameters[0].Value = name;
            command.Parameters[1].Value = owner;
            return command.ExecuteNonQuery();
        });
}
