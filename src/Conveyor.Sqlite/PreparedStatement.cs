using System.Text;
using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace Conveyor.Sqlite;

/// <summary>
/// A statement prepared once on the writer's connection and bound by position through SQLitePCL,
/// for the per-row statements of the hot path (insert, fetch, complete).
/// </summary>
/// <remarks>
/// Microsoft.Data.Sqlite binds every parameter by name on every execution
/// (<c>sqlite3_bind_parameter_index</c>: a UTF-8 conversion and a linear scan of the statement's
/// parameters) and boxes every value; for the 17-parameter insert that was over half the writer's
/// time per row. Here names are resolved once, values are bound without boxing, and columns are
/// read straight from SQLite's buffers. Only the writer's thread uses an instance. The statement is
/// always left reset, so it holds no lock between calls.
/// </remarks>
internal sealed class PreparedStatement : IDisposable
{
    private readonly sqlite3 _db;
    private readonly sqlite3_stmt _stmt;
    private readonly int[] _indexes;

    /// <param name="connection">An open connection; the statement must be disposed before it closes.</param>
    /// <param name="sql">One SQL statement.</param>
    /// <param name="parameters">Parameter names; position <c>i</c> in this list is bound by the methods' <c>parameter</c> argument <c>i</c>.</param>
    public PreparedStatement(SqliteConnection connection, string sql, IReadOnlyList<string> parameters)
    {
        _db = connection.Handle ?? throw new InvalidOperationException("The connection is not open.");
        Check(raw.sqlite3_prepare_v3(_db, sql, raw.SQLITE_PREPARE_PERSISTENT, out _stmt));
        _indexes = new int[parameters.Count];
        for (var i = 0; i < parameters.Count; i++)
        {
            _indexes[i] = raw.sqlite3_bind_parameter_index(_stmt, parameters[i]);
            if (_indexes[i] == 0)
            {
                throw new ArgumentException($"Parameter {parameters[i]} does not occur in: {sql}", nameof(parameters));
            }
        }
    }

    public void Bind(int parameter, long value) => Check(raw.sqlite3_bind_int64(_stmt, _indexes[parameter], value));

    public void Bind(int parameter, long? value)
    {
        if (value is { } v)
        {
            Bind(parameter, v);
        }
        else
        {
            BindNull(parameter);
        }
    }

    public void Bind(int parameter, double value) => Check(raw.sqlite3_bind_double(_stmt, _indexes[parameter], value));

    public void Bind(int parameter, string? value)
    {
        if (value is null)
        {
            BindNull(parameter);
        }
        else
        {
            Check(raw.sqlite3_bind_text(_stmt, _indexes[parameter], value));
        }
    }

    /// <summary>Binds a blob; SQLite copies it, so the span may be reused at once.</summary>
    public void Bind(int parameter, ReadOnlySpan<byte> value) => Check(raw.sqlite3_bind_blob(_stmt, _indexes[parameter], value));

    public void BindNull(int parameter) => Check(raw.sqlite3_bind_null(_stmt, _indexes[parameter]));

    /// <summary>Runs the statement to its end and returns the rows it changed.</summary>
    public int Execute()
    {
        try
        {
            int rc;
            while ((rc = raw.sqlite3_step(_stmt)) == raw.SQLITE_ROW)
            {
            }
            Check(rc, raw.SQLITE_DONE);
            return raw.sqlite3_changes(_db);
        }
        finally
        {
            raw.sqlite3_reset(_stmt);
        }
    }

    /// <summary>Steps to the next row; false at the end. The caller must call <see cref="Reset"/> when done, also on failure.</summary>
    public bool Read()
    {
        var rc = raw.sqlite3_step(_stmt);
        if (rc == raw.SQLITE_ROW)
        {
            return true;
        }
        Check(rc, raw.SQLITE_DONE);
        return false;
    }

    public void Reset() => raw.sqlite3_reset(_stmt);

    public bool IsNull(int column) => raw.sqlite3_column_type(_stmt, column) == raw.SQLITE_NULL;

    public long GetInt64(int column) => raw.sqlite3_column_int64(_stmt, column);

    public int GetInt32(int column) => raw.sqlite3_column_int(_stmt, column);

    public double GetDouble(int column) => raw.sqlite3_column_double(_stmt, column);

    /// <summary>The column's bytes (a TEXT column's UTF-8), valid until the next step or reset.</summary>
    public ReadOnlySpan<byte> GetBytes(int column) => raw.sqlite3_column_blob(_stmt, column);

    public string? GetString(int column) => IsNull(column) ? null : Encoding.UTF8.GetString(GetBytes(column));

    public long? GetNullableInt64(int column) => IsNull(column) ? null : GetInt64(column);

    private void Check(int rc, int expected = raw.SQLITE_OK)
    {
        if (rc != expected)
        {
            throw new SqliteException(raw.sqlite3_errmsg(_db).utf8_to_string(), rc, raw.sqlite3_extended_errcode(_db));
        }
    }

    public void Dispose() => _stmt.Dispose();
}
