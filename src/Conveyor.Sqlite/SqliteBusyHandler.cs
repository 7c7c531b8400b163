using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Data.Sqlite;

namespace Conveyor.Sqlite;

/// <summary>
/// How the writer waits when another process holds the database's write lock. SQLite's own handler
/// (<c>busy_timeout</c>) sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100 ms between tries, so a writer that
/// meets the lock once or twice — as a worker and a producer in two processes on one file do, each transaction taking
/// well under a millisecond — waits 3 to 8 ms for a lock held a fraction of that: the tail of cross-process
/// enqueue-to-start latency. This handler yields the thread for the first tries (the holder's commit usually ends
/// within them), then sleeps 1 ms at a time, up to the same busy timeout. Installed through SQLite's C API
/// (<c>sqlite3_busy_handler</c>), which Microsoft.Data.Sqlite does not expose; where the native library cannot be
/// reached that way, the writer keeps <c>PRAGMA busy_timeout</c>.
/// </summary>
internal static unsafe partial class SqliteBusyHandler
{
    /// <summary>Tries that only yield the thread before the handler starts sleeping 1 ms at a time.</summary>
    private const int YieldingTries = 20;

    [ThreadStatic]
    private static long t_busySince;

    /// <summary>Installs the handler on <paramref name="connection"/>, giving up after <paramref name="timeout"/>;
    /// false when the native call is not available (the caller then sets <c>busy_timeout</c>).</summary>
    public static bool TryInstall(SqliteConnection connection, TimeSpan timeout)
    {
        try
        {
            var db = connection.Handle!.DangerousGetHandle();
            var timeoutMs = (nint)Math.Max(1L, (long)timeout.TotalMilliseconds);
            return sqlite3_busy_handler(db, &OnBusy, timeoutMs) == 0;
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException)
        {
            return false;
        }
    }

    [LibraryImport("e_sqlite3")]
    private static partial int sqlite3_busy_handler(nint db, delegate* unmanaged[Cdecl]<nint, int, int> handler, nint argument);

    /// <summary>Called by SQLite while the lock is held elsewhere: non-zero to try again, zero to give up (SQLITE_BUSY).</summary>
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int OnBusy(nint timeoutMs, int tries)
    {
        if (tries == 0)
        {
            t_busySince = Stopwatch.GetTimestamp();
        }
        if (Stopwatch.GetElapsedTime(t_busySince).TotalMilliseconds >= timeoutMs)
        {
            return 0;
        }
        if (tries < YieldingTries)
        {
            Thread.Yield();
        }
        else
        {
            Thread.Sleep(1);
        }
        return 1;
    }
}
