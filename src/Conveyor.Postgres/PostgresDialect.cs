using System.Data.Common;
using Conveyor.Sql;

namespace Conveyor.Postgres;

/// <summary>PostgreSQL's spelling of the shared SQL: <c>@name</c> parameters, <c>uuid</c> ids, <c>smallint</c> states and
/// <c>boolean</c> flags.</summary>
internal sealed class PostgresDialect : SqlDialect
{
    public static readonly PostgresDialect Instance = new();

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
