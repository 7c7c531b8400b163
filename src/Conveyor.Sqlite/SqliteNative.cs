using System.Runtime.InteropServices;
using SQLitePCL;

namespace Conveyor.Sqlite;

/// <summary>
/// The few SQLite C functions the writer's prepared statements call for every row (<see cref="PreparedStatement"/>),
/// called on the handles' pointers. SQLitePCL's own calls pass each handle as a <see cref="SafeHandle"/> (a reference
/// count taken and released around each call) through a full managed-to-native transition; the functions that only
/// read or bind a value (no I/O, no lock, no callback into managed code) are marked
/// <see cref="SuppressGCTransitionAttribute"/>, which the runtime allows for such short calls (a bind, for a short value
/// only). Steps and resets keep the full transition: they do I/O and may call the busy handler.
/// </summary>
/// <remarks>The library is the one SQLitePCL's bundled provider loads (the same name, so the same loaded image: the
/// handles it made are valid here); <see cref="Available"/> checks that it is reachable and is that very image, and the
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
            // The same loaded image, not merely a library of that name and version (another copy would never have been
            // initialized, and the handles are not its own): the address of the version string inside it is the same.
            if (raw.GetNativeLibraryName() != Library)
            {
                return false;
            }
            fixed (byte* theirs = raw.sqlite3_libversion())
            {
                return theirs is not null && theirs == sqlite3_libversion();
            }
        }
#pragma warning disable CA1031 // Whatever fails here (no provider set, the library not found), the statements use SQLitePCL.
        catch (Exception)
#pragma warning restore CA1031
        {
            return false;
        }
    }

    [LibraryImport(Library)]
    private static partial byte* sqlite3_libversion();

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

    /// <summary>Values up to this many bytes are bound without the GC transition: SQLite copies them (a small
    /// allocation and a copy); a longer one may take the allocator's locks or map memory, so it keeps the transition.</summary>
    public const int ShortValueBytes = 512;

    [LibraryImport(Library)]
    public static partial int sqlite3_bind_text(nint stmt, int index, byte* text, int length, nint destructor);

    [LibraryImport(Library, EntryPoint = "sqlite3_bind_text")]
    [SuppressGCTransition]
    public static partial int sqlite3_bind_short_text(nint stmt, int index, byte* text, int length, nint destructor);

    [LibraryImport(Library)]
    public static partial int sqlite3_bind_blob(nint stmt, int index, byte* blob, int length, nint destructor);

    [LibraryImport(Library, EntryPoint = "sqlite3_bind_blob")]
    [SuppressGCTransition]
    public static partial int sqlite3_bind_short_blob(nint stmt, int index, byte* blob, int length, nint destructor);

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
