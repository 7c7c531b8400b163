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
/// Binds, column reads and steps call the native library directly (<see cref="SqliteNative"/>) on the handles'
/// pointers, where SQLitePCL's calls take and release each handle's reference count and make the runtime's full
/// transition on every call: about 35 calls a task on the writer's thread, which bounds the drain.
/// </remarks>
internal sealed unsafe class PreparedStatement : IDisposable
{
    // Text up to this many UTF-8 bytes is encoded on the stack; longer text into an array of its own.
    private const int StackTextBytes = SqliteNative.ShortValueBytes;

    private readonly sqlite3 _db;
    private readonly sqlite3_stmt _stmt;
    private readonly nint _dbHandle;
    private nint _handle;
    private readonly int[] _indexes;
    // Calls the native library directly (SqliteNative) rather than through SQLitePCL; a test may ask for either.
    private readonly bool _direct;

    /// <param name="connection">An open connection; the statement must be disposed before it closes.</param>
    /// <param name="sql">One SQL statement.</param>
    /// <param name="parameters">Parameter names; position <c>i</c> in this list is bound by the methods' <c>parameter</c> argument <c>i</c>.</param>
    /// <param name="direct">True to call the native library directly (it must be <see cref="SqliteNative.Available"/>),
    /// false to go through SQLitePCL (tests run both), null for the first where available.</param>
    public PreparedStatement(SqliteConnection connection, string sql, IReadOnlyList<string> parameters, bool? direct = null)
    {
        _db = connection.Handle ?? throw new InvalidOperationException("The connection is not open.");
        _direct = direct ?? SqliteNative.Available;
        if (_direct && !SqliteNative.Available)
        {
            throw new InvalidOperationException("The native library cannot be called directly here.");
        }
        Check(raw.sqlite3_prepare_v3(_db, sql, raw.SQLITE_PREPARE_PERSISTENT, out _stmt));
        _dbHandle = _db.DangerousGetHandle();
        _handle = _stmt.DangerousGetHandle();
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

    public void Bind(int parameter, long value) => Check(_direct
        ? SqliteNative.sqlite3_bind_int64(_handle, _indexes[parameter], value)
        : raw.sqlite3_bind_int64(_stmt, _indexes[parameter], value));

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

    public void Bind(int parameter, double value) => Check(_direct
        ? SqliteNative.sqlite3_bind_double(_handle, _indexes[parameter], value)
        : raw.sqlite3_bind_double(_stmt, _indexes[parameter], value));

    public void Bind(int parameter, string? value)
    {
        if (value is null)
        {
            BindNull(parameter);
        }
        else if (value.Length <= StackTextBytes / 3)
        {
            // At most 3 UTF-8 bytes a UTF-16 unit: it fits.
            Span<byte> utf8 = stackalloc byte[StackTextBytes];
            BindText(parameter, utf8[..Encoding.UTF8.GetBytes(value, utf8)]);
        }
        else
        {
            BindText(parameter, Encoding.UTF8.GetBytes(value));
        }
    }

    // Both ways bind the text's whole length (SQLitePCL's string overload would stop at a NUL character), and SQLite
    // copies it (SQLITE_TRANSIENT), so the buffer may be reused at once.
    private void BindText(int parameter, ReadOnlySpan<byte> utf8)
    {
        if (!_direct)
        {
            Check(raw.sqlite3_bind_text(_stmt, _indexes[parameter], utf8));
            return;
        }
        // A pointer that is never null, even for empty text: SQLite binds a null pointer as NULL, not as ''.
        byte empty = 0;
        fixed (byte* text = utf8)
        {
            var pointer = utf8.IsEmpty ? &empty : text;
            Check(utf8.Length <= SqliteNative.ShortValueBytes
                ? SqliteNative.sqlite3_bind_short_text(_handle, _indexes[parameter], pointer, utf8.Length, SqliteNative.Transient)
                : SqliteNative.sqlite3_bind_text(_handle, _indexes[parameter], pointer, utf8.Length, SqliteNative.Transient));
        }
    }

    /// <summary>Binds a blob; SQLite copies it, so the span may be reused at once.</summary>
    public void Bind(int parameter, ReadOnlySpan<byte> value)
    {
        if (!_direct)
        {
            Check(raw.sqlite3_bind_blob(_stmt, _indexes[parameter], value));
            return;
        }
        // A pointer that is never null, even for an empty span: SQLite binds a null pointer as NULL, not as an empty blob.
        byte empty = 0;
        fixed (byte* blob = value)
        {
            var pointer = value.IsEmpty ? &empty : blob;
            Check(value.Length <= SqliteNative.ShortValueBytes
                ? SqliteNative.sqlite3_bind_short_blob(_handle, _indexes[parameter], pointer, value.Length, SqliteNative.Transient)
                : SqliteNative.sqlite3_bind_blob(_handle, _indexes[parameter], pointer, value.Length, SqliteNative.Transient));
        }
    }

    public void BindNull(int parameter) => Check(_direct
        ? SqliteNative.sqlite3_bind_null(_handle, _indexes[parameter])
        : raw.sqlite3_bind_null(_stmt, _indexes[parameter]));

    /// <summary>Runs the statement to its end and returns the rows it changed.</summary>
    public int Execute()
    {
        try
        {
            int rc;
            while ((rc = Step()) == raw.SQLITE_ROW)
            {
            }
            Check(rc, raw.SQLITE_DONE);
            return _direct ? SqliteNative.sqlite3_changes(_dbHandle) : raw.sqlite3_changes(_db);
        }
        finally
        {
            Reset();
        }
    }

    /// <summary>Steps to the next row; false at the end. The caller must call <see cref="Reset"/> when done, also on failure.</summary>
    public bool Read()
    {
        var rc = Step();
        if (rc == raw.SQLITE_ROW)
        {
            return true;
        }
        Check(rc, raw.SQLITE_DONE);
        return false;
    }

    private int Step() => _direct ? SqliteNative.sqlite3_step(_handle) : raw.sqlite3_step(_stmt);

    public void Reset()
    {
        if (_direct)
        {
            // It repeats the last step's error, which that step already reported.
            _ = SqliteNative.sqlite3_reset(_handle);
        }
        else
        {
            raw.sqlite3_reset(_stmt);
        }
    }

    public bool IsNull(int column) =>
        (_direct ? SqliteNative.sqlite3_column_type(_handle, column) : raw.sqlite3_column_type(_stmt, column)) == raw.SQLITE_NULL;

    public long GetInt64(int column) =>
        _direct ? SqliteNative.sqlite3_column_int64(_handle, column) : raw.sqlite3_column_int64(_stmt, column);

    public int GetInt32(int column) =>
        _direct ? SqliteNative.sqlite3_column_int(_handle, column) : raw.sqlite3_column_int(_stmt, column);

    public double GetDouble(int column) =>
        _direct ? SqliteNative.sqlite3_column_double(_handle, column) : raw.sqlite3_column_double(_stmt, column);

    /// <summary>The column's bytes (a TEXT column's UTF-8), valid until the next step or reset.</summary>
    public ReadOnlySpan<byte> GetBytes(int column)
    {
        if (!_direct)
        {
            return raw.sqlite3_column_blob(_stmt, column);
        }
        // The pointer first, then the length: asking for the pointer may convert the value, which changes its length.
        var blob = SqliteNative.sqlite3_column_blob(_handle, column);
        return blob is null ? default : new ReadOnlySpan<byte>(blob, SqliteNative.sqlite3_column_bytes(_handle, column));
    }

    public string? GetString(int column) => IsNull(column) ? null : Encoding.UTF8.GetString(GetBytes(column));

    public long? GetNullableInt64(int column) => IsNull(column) ? null : GetInt64(column);

    private void Check(int rc, int expected = raw.SQLITE_OK)
    {
        if (rc != expected)
        {
            throw new SqliteException(raw.sqlite3_errmsg(_db).utf8_to_string(), rc, raw.sqlite3_extended_errcode(_db));
        }
    }

    /// <summary>How often SQLite compiled the statement again since it was prepared (SQLITE_STMTSTATUS_REPREPARE): after a
    /// schema change, or after a new value was bound to a parameter that its plan depends on.</summary>
    public int Reprepares => raw.sqlite3_stmt_status(_stmt, 5 /* SQLITE_STMTSTATUS_REPREPARE */, 0);

    public void Dispose()
    {
        // A call after this would pass a freed pointer: zero makes SQLite answer SQLITE_MISUSE instead.
        _handle = 0;
        _stmt.Dispose();
    }
}
