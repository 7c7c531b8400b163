using System.Data.Common;
using Conveyor.Backends;

namespace Conveyor.Sql;

/// <summary>The statements and row mapping of the <c>audit_log</c> table (<see cref="IAuditLog"/>), shared by the SQL
/// backends. Ids are kept as their lower-case text, times as ms since the Unix epoch; the list is ordered by
/// <c>(at, id)</c> descending, which the <c>(at, id)</c> index serves.</summary>
public static class AuditRows
{
    /// <summary>The columns in the order <see cref="Read"/> reads them.</summary>
    public const string Columns = "id, at, actor, actor_kind, action, target, outcome, status, remote_address, user_agent, details";

    private static readonly string[] ColumnNames = Columns.Split(", ");

    /// <summary>The parameter names of <see cref="InsertSql"/>, in column order.</summary>
    public static IReadOnlyList<string> InsertParameters(SqlDialect dialect)
    {
        ArgumentNullException.ThrowIfNull(dialect);
        return ColumnNames.Select(dialect.Parameter).ToArray();
    }

    /// <summary>The INSERT of one entry into <paramref name="table"/>.</summary>
    public static string InsertSql(SqlDialect dialect, string table) =>
        $"INSERT INTO {table} ({Columns}) VALUES ({string.Join(", ", InsertParameters(dialect))})";

    /// <summary>The values of <see cref="InsertSql"/>'s parameters for <paramref name="entry"/>, in column order.</summary>
    public static object[] InsertValues(AuditEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        return
        [
            entry.IdText, entry.At.ToUnixTimeMilliseconds(), entry.Actor, entry.ActorKind, entry.Action, Nullable(entry.Target),
            entry.Outcome, entry.Status is { } status ? status : DBNull.Value, Nullable(entry.RemoteAddress), Nullable(entry.UserAgent),
            Nullable(entry.Details),
        ];
    }

    /// <summary>The DELETE of up to <c>limit</c> entries older than <c>before</c>, oldest first.</summary>
    public static string DeleteSql(SqlDialect dialect, string table)
    {
        ArgumentNullException.ThrowIfNull(dialect);
        return $"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE at < {dialect.Parameter("before")} ORDER BY at, id {dialect.Limit(dialect.Parameter("limit"))})";
    }

    /// <summary>Makes <paramref name="command"/> the SELECT of <paramref name="query"/>'s page, one row more than its
    /// limit (to tell whether a next page exists).</summary>
    public static void PrepareList(DbCommand command, SqlDialect dialect, string table, AuditQuery query)
    {
        ArgumentNullException.ThrowIfNull(command);
        ArgumentNullException.ThrowIfNull(dialect);
        ArgumentNullException.ThrowIfNull(query);
        var where = new List<string>();
        void Add(string name, object value)
        {
            var parameter = command.CreateParameter();
            parameter.ParameterName = dialect.Parameter(name);
            parameter.Value = value;
            command.Parameters.Add(parameter);
        }
        if (!string.IsNullOrEmpty(query.ActionPrefix))
        {
            // substr rather than LIKE: no wildcard in the prefix to escape.
            where.Add($"substr(action, 1, {query.ActionPrefix.Length}) = {dialect.Parameter("action")}");
            Add("action", query.ActionPrefix);
        }
        if (!string.IsNullOrEmpty(query.Actor))
        {
            where.Add($"actor = {dialect.Parameter("actor")}");
            Add("actor", query.Actor);
        }
        if (query.Since is { } since)
        {
            where.Add($"at >= {dialect.Parameter("since")}");
            Add("since", since.ToUnixTimeMilliseconds());
        }
        if (query.Until is { } until)
        {
            where.Add($"at <= {dialect.Parameter("until")}");
            Add("until", until.ToUnixTimeMilliseconds());
        }
        if (query.After is { } after)
        {
            where.Add($"(at < {dialect.Parameter("afterAt")} OR (at = {dialect.Parameter("afterAt")} AND id < {dialect.Parameter("afterId")}))");
            Add("afterAt", after.At.ToUnixTimeMilliseconds());
            Add("afterId", after.Id.ToString("D"));
        }
        Add("limit", Math.Max(1, query.Limit) + 1);
        command.CommandText = $"SELECT {Columns} FROM {table}{(where.Count == 0 ? "" : " WHERE " + string.Join(" AND ", where))} " +
            $"ORDER BY at DESC, id DESC {dialect.Limit(dialect.Parameter("limit"))}";
    }

    /// <summary>Reads the page <see cref="PrepareList"/> selected.</summary>
    public static async Task<AuditPage> ReadPageAsync(DbCommand command, AuditQuery query, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(command);
        ArgumentNullException.ThrowIfNull(query);
        var entries = new List<AuditEntry>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            entries.Add(Read(reader));
        }
        return AuditPage.Of(entries, query.Limit);
    }

    /// <summary>One row in <see cref="Columns"/> order.</summary>
    public static AuditEntry Read(DbDataReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        return new AuditEntry(Guid.Parse(reader.GetString(0)), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(1)),
            reader.GetString(2), reader.GetString(3), reader.GetString(4), Text(reader, 5), reader.GetString(6),
            reader.IsDBNull(7) ? null : reader.GetInt32(7), Text(reader, 8), Text(reader, 9), Text(reader, 10));
    }

    private static object Nullable(string? value) => value is null ? DBNull.Value : value;

    private static string? Text(DbDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : reader.GetString(ordinal);
}
