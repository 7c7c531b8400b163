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

    // No boolean type: flags are INTEGER 0/1.
    public override bool ReadFlag(DbDataReader reader, int ordinal)
    {
        ArgumentNullException.ThrowIfNull(reader);
        return reader.GetInt64(ordinal) != 0;
    }
}
