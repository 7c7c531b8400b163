using System.Runtime.InteropServices;
using SQLitePCL;

namespace Conveyor.Sqlite;

/// <summary>
/// The few SQLite C functions the writer's prepared statements call for every row (<see cref="PreparedStatement"/>),
/// called on the handles' pointers. SQLitePCL's own calls pass each handle as a <see cref="SafeHandle"/> (a reference
/// count taken and released around each call) through a full managed-to-native transition; the functions that only
/// read or bind a value (no I/O, no lock, no callback into managed code) are marked
/// <see cref="SuppressGCTransitionAttribute"/>, which the runtime allows for such short calls. Steps and resets keep the
/// full transition: they do I/O and may call the busy handler.
/// </summary>
/// <remarks>The library is the one SQLitePCL's bundled provider loads (the same name, so the same loaded image: the
/// handles it made are valid here); <see cref="Available"/> checks that it is reachable and is that library, and the
/// statements fall back to SQLitePCL's calls where it is not (another provider, another platform's packaging).</remarks>
internal static unsafe partial class SqliteNative
{
    private const string Library = "e_sqlite3";

    /// <summary>SQLITE_TRANSIENT: SQLite copies a bound value before the call returns.</summary>
    public static readonly nint Transient = -1;

    /// <summary>True when the calls below reach the library SQLitePCL uses.</summary>
    public static readonly bool Available = Probe();

    private static bool Probe()
    {
        try
        {
            // The provider is initialized first (SqliteConnection's static constructor does it), so that the versions compare.
            return raw.GetNativeLibraryName() == Library && sqlite3_libversion_number() == raw.sqlite3_libversion_number();
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException or InvalidOperationException)
        {
            return false;
        }
    }

    [LibraryImport(Library)]
    private static partial int sqlite3_libversion_number();

    [LibraryImport(Library)]
    public static partial int sqlite3_step(nint stmt);

    [LibraryImport(Library)]
    public static partial int sqlite3_reset(nint stmt);

    [LibraryImport(Library)]
    [SuppressGCTransition]
    public static partial int sqlite3_changes(nint db);

    [LibraryImport(Library)]
    [SuppressGCTransition]
    public static partial int sqlite3_bind_int64(nint stmt, int index, long value);

    [LibraryImport(Library)]
    [SuppressGCTransition]
    public static partial int sqlite3_bind_double(nint stmt, int index, double value);

    [LibraryImport(Library)]
    [SuppressGCTransition]
    public static partial int sqlite3_bind_null(nint stmt, int index);

    [LibraryImport(Library)]
    [SuppressGCTransition]
    public static partial int sqlite3_bind_text(nint stmt, int index, byte* text, int length, nint destructor);

    [LibraryImport(Library)]
    [SuppressGCTransition]
    public static partial int sqlite3_bind_blob(nint stmt, int index, byte* blob, int length, nint destructor);

    [LibraryImport(Library)]
    [SuppressGCTransition]
    public static partial int sqlite3_column_type(nint stmt, int column);

    [LibraryImport(Library)]
    [SuppressGCTransition]
    public static partial long sqlite3_column_int64(nint stmt, int column);

    [LibraryImport(Library)]
    [SuppressGCTransition]
    public static partial int sqlite3_column_int(nint stmt, int column);

    [LibraryImport(Library)]
    [SuppressGCTransition]
    public static partial double sqlite3_column_double(nint stmt, int column);

    [LibraryImport(Library)]
    [SuppressGCTransition]
    public static partial byte* sqlite3_column_blob(nint stmt, int column);

    [LibraryImport(Library)]
    [SuppressGCTransition]
    public static partial int sqlite3_column_bytes(nint stmt, int column);
}
