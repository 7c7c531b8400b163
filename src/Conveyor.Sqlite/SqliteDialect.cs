using System.Data.Common;
using Conveyor.Sql;

namespace Conveyor.Sqlite;

/// <summary>SQLite's spelling of the shared SQL: <c>$name</c> parameters, ids as 16 big-endian bytes (so that a blob's
/// order is the uuid's), integers for states and flags.</summary>
internal sealed class SqliteDialect : SqlDialect
{
    public static readonly SqliteDialect Instance = new();

    public override char ParameterPrefix => '$';

    public override object TaskIdValue(Guid id) => id.ToByteArray(bigEndian: true);

    public override Guid ReadTaskId(DbDataReader reader, int ordinal)
    {
        ArgumentNullException.ThrowIfNull(reader);
        return new Guid(reader.GetFieldValue<byte[]>(ordinal), bigEndian: true);
    }

    // As migration 016 has it: SQLite evaluates an index's predicate on the old and the new row of every UPDATE that
    // writes state, and codes an IN list of three or more values as a temporary b-tree built for each statement run:
    // two for every completion and every lease. A range is two comparisons. Queued, running, succeeded are 1, 2, 3.
    public override string RareStates => $"state NOT BETWEEN {StoredStates.Queued} AND {StoredStates.Succeeded}";

    // No boolean type: flags are INTEGER 0/1.
    public override bool ReadFlag(DbDataReader reader, int ordinal)
    {
        ArgumentNullException.ThrowIfNull(reader);
        return reader.GetInt64(ordinal) != 0;
    }
}
