using Conveyor.Backends;
using Npgsql;

namespace Conveyor.Postgres;

public sealed partial class PostgresBackend
{
    /// <inheritdoc />
    public async Task<IReadOnlyList<StoredSchedule>> ListSchedulesAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, $"SELECT name, version, document FROM {_schedules} ORDER BY name");
        return await ReadSchedulesAsync(command, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<StoredSchedule?> GetScheduleAsync(string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, $"SELECT name, version, document FROM {_schedules} WHERE name = @name");
        command.Parameters.AddWithValue("name", name);
        return (await ReadSchedulesAsync(command, cancellationToken).ConfigureAwait(false)).FirstOrDefault();
    }

    /// <inheritdoc />
    public async Task<bool> AddScheduleAsync(StoredSchedule schedule, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection,
            $"INSERT INTO {_schedules} (name, version, document) VALUES (@name, @version, @document) ON CONFLICT (name) DO NOTHING");
        command.Parameters.AddWithValue("name", schedule.Name);
        command.Parameters.AddWithValue("version", schedule.Version);
        command.Parameters.AddWithValue("document", schedule.Document);
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 1;
    }

    /// <inheritdoc />
    public async Task<bool> ReplaceScheduleAsync(StoredSchedule schedule, long expectedVersion, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection,
            $"UPDATE {_schedules} SET version = @version, document = @document WHERE name = @name AND version = @expected");
        command.Parameters.AddWithValue("name", schedule.Name);
        command.Parameters.AddWithValue("version", schedule.Version);
        command.Parameters.AddWithValue("document", schedule.Document);
        command.Parameters.AddWithValue("expected", expectedVersion);
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 1;
    }

    /// <inheritdoc />
    public async Task<bool> DeleteScheduleAsync(string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, $"DELETE FROM {_schedules} WHERE name = @name");
        command.Parameters.AddWithValue("name", name);
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 1;
    }

    private static async Task<List<StoredSchedule>> ReadSchedulesAsync(NpgsqlCommand command, CancellationToken cancellationToken)
    {
        var schedules = new List<StoredSchedule>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            schedules.Add(new(reader.GetString(0), reader.GetInt64(1), reader.GetString(2)));
        }
        return schedules;
    }
}
