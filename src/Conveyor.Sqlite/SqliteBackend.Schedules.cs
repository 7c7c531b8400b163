using Conveyor.Backends;

namespace Conveyor.Sqlite;

public sealed partial class SqliteBackend
{
    /// <inheritdoc />
    public async Task<IReadOnlyList<StoredSchedule>> ListSchedulesAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand();
        // BINARY collation: ordinal order, as the contract asks.
        command.CommandText = "SELECT name, version, document FROM schedules ORDER BY name";
        var schedules = new List<StoredSchedule>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            schedules.Add(new(reader.GetString(0), reader.GetInt64(1), reader.GetString(2)));
        }
        return schedules;
    }

    /// <inheritdoc />
    public async Task<StoredSchedule?> GetScheduleAsync(string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT name, version, document FROM schedules WHERE name = $name";
        command.Parameters.AddWithValue("$name", name);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        return await reader.ReadAsync(cancellationToken).ConfigureAwait(false)
            ? new StoredSchedule(reader.GetString(0), reader.GetInt64(1), reader.GetString(2))
            : null;
    }

    /// <inheritdoc />
    public Task<bool> AddScheduleAsync(StoredSchedule schedule, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        return Writer.RunAsync(w =>
        {
            var command = w.Statement("INSERT INTO schedules (name, version, document) VALUES ($name, $version, $document) ON CONFLICT (name) DO NOTHING",
                "$name", "$version", "$document");
            command.Parameters[0].Value = schedule.Name;
            command.Parameters[1].Value = schedule.Version;
            command.Parameters[2].Value = schedule.Document;
            return command.ExecuteNonQuery() == 1;
        });
    }

    /// <inheritdoc />
    public Task<bool> ReplaceScheduleAsync(StoredSchedule schedule, long expectedVersion, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        return Writer.RunAsync(w =>
        {
            var command = w.Statement("UPDATE schedules SET version = $version, document = $document WHERE name = $name AND version = $expected",
                "$name", "$version", "$document", "$expected");
            command.Parameters[0].Value = schedule.Name;
            command.Parameters[1].Value = schedule.Version;
            command.Parameters[2].Value = schedule.Document;
            command.Parameters[3].Value = expectedVersion;
            return command.ExecuteNonQuery() == 1;
        });
    }

    /// <inheritdoc />
    public Task<bool> DeleteScheduleAsync(string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        return Writer.RunAsync(w =>
        {
            var command = w.Statement("DELETE FROM schedules WHERE name = $name", "$name");
            command.Parameters[0].Value = name;
            return command.ExecuteNonQuery() == 1;
        });
    }
}
