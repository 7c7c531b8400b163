using System.Data.Common;
using Conveyor.Sql;

namespace Conveyor.Postgres;

/// <summary>PostgreSQL's spelling of the shared SQL: <c>@name</c> parameters, <c>uuid</c> ids, <c>smallint</c> states,
/// <c>boolean</c> flags and tables named with their schema.</summary>
internal sealed class PostgresDialect : SqlDialect
{
    /// <summary>The dialect without a schema: for what names no table (quoting, migrations, which set their own search
    /// path).</summary>
    public static readonly PostgresDialect Instance = new(null);

    private readonly string _tablePrefix;

    /// <summary>The dialect of the tables in <paramref name="schema"/>, or unqualified tables when null.</summary>
    public PostgresDialect(string? schema) => _tablePrefix = schema is null ? "" : QuoteIdentifier(schema) + ".";

    public override string Table(string name) => _tablePrefix + name;

    public override char ParameterPrefix => '@';

    public override object TaskIdValue(Guid id) => id;

    public override Guid ReadTaskId(DbDataReader reader, int ordinal)
    {
        ArgumentNullException.ThrowIfNull(reader);
        return reader.GetGuid(ordinal);
    }

    // tasks.state is smallint: bound as one, so the comparison needs no cast and uses the partial indexes.
    public override object StateValue(TaskState state) => (short)state;

    public override TaskState ReadState(DbDataReader reader, int ordinal)
    {
        ArgumentNullException.ThrowIfNull(reader);
        return (TaskState)reader.GetInt16(ordinal);
    }
}
