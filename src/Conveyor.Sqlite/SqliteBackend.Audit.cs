using Conveyor.Backends;
using Conveyor.Sql;

namespace Conveyor.Sqlite;

public sealed partial class SqliteBackend : IAuditLog
{
    /// <inheritdoc />
    public IAuditLog Audit => this;

    /// <inheritdoc />
    public Task AppendAuditAsync(AuditEntry entry, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(entry);
        var values = AuditRows.InsertValues(entry);
        return Writer.RunAsync(w =>
        {
            var command = w.Statement(AuditRows.InsertSql(SqliteDialect.Instance, "audit_log"), [.. AuditRows.InsertParameters(SqliteDialect.Instance)]);
            for (var i = 0; i < values.Length; i++)
            {
                command.Parameters[i].Value = values[i];
            }
            return command.ExecuteNonQuery();
        });
    }

    /// <inheritdoc />
    public async Task<AuditPage> ListAuditAsync(AuditQuery query, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(query);
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand();
        AuditRows.PrepareList(command, SqliteDialect.Instance, "audit_log", query);
        return await AuditRows.ReadPageAsync(command, query, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public Task<int> DeleteAuditBeforeAsync(DateTimeOffset before, int limit, CancellationToken cancellationToken) =>
        Writer.RunAsync(w =>
        {
            var command = w.Statement(AuditRows.DeleteSql(SqliteDialect.Instance, "audit_log"), "$before", "$limit");
            command.Parameters[0].Value = before.ToUnixTimeMilliseconds();
            command.Parameters[1].Value = Math.Max(1, limit);
            return command.ExecuteNonQuery();
        });
}
