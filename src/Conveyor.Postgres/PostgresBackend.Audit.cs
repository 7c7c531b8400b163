using Conveyor.Backends;
using Conveyor.Sql;

namespace Conveyor.Postgres;

public sealed partial class PostgresBackend : IAuditLog
{
    /// <inheritdoc />
    public IAuditLog Audit => this;

    /// <inheritdoc />
    public async Task AppendAuditAsync(AuditEntry entry, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(entry);
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, AuditRows.InsertSql(_dialect, _auditLog));
        var names = AuditRows.InsertParameters(_dialect);
        var values = AuditRows.InsertValues(entry);
        for (var i = 0; i < values.Length; i++)
        {
            command.Parameters.Add(new Npgsql.NpgsqlParameter(names[i], i == 7 ? NpgsqlTypes.NpgsqlDbType.Integer : i == 1 ? NpgsqlTypes.NpgsqlDbType.Bigint : NpgsqlTypes.NpgsqlDbType.Text) { Value = values[i] });
        }
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<AuditPage> ListAuditAsync(AuditQuery query, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(query);
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand();
        AuditRows.PrepareList(command, _dialect, _auditLog, query);
        return await AuditRows.ReadPageAsync(command, query, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<int> DeleteAuditBeforeAsync(DateTimeOffset before, int limit, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, AuditRows.DeleteSql(_dialect, _auditLog));
        command.Parameters.AddWithValue("before", before.ToUnixTimeMilliseconds());
        command.Parameters.AddWithValue("limit", Math.Max(1, limit));
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }
}
