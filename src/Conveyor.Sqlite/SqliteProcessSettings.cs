using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace Conveyor.Sqlite;

/// <summary>
/// SQLite's process-wide settings, applied by the first backend before the process's first SQLite connection. With its
/// memory statistics on (SQLite's default), every allocation and free inside SQLite takes one global mutex to count
/// itself; the single writer thread allocates for each statement it steps, and a no-op drain gained 8 % with them off
/// (docs/benchmarks.md, "SQLite's memory statistics"). Nothing in Conveyor or Microsoft.Data.Sqlite reads them.
/// </summary>
internal static class SqliteProcessSettings
{
    private static readonly Lock Gate = new();
    private static bool _decided;

    /// <summary>SQLite's answer to turning its memory statistics off: 0 (<c>SQLITE_OK</c>) when done, 21
    /// (<c>SQLITE_MISUSE</c>) when SQLite was already initialized in this process (they stay on); null when not asked.</summary>
    internal static int? MemoryStatisticsOff { get; private set; }

    /// <summary>Turns SQLite's memory statistics off unless <paramref name="keepMemoryStatistics"/>. The first call decides;
    /// the others wait until it is done (nothing else may call SQLite while <c>sqlite3_config</c> runs), then return.</summary>
    public static void Apply(bool keepMemoryStatistics)
    {
        lock (Gate)
        {
            if (_decided)
            {
                return;
            }
            _decided = true;
            if (keepMemoryStatistics)
            {
                return;
            }
            // Microsoft.Data.Sqlite picks the native library (its bundle) in SqliteConnection's static constructor: a
            // connection built and not opened does that without initializing SQLite, after which the setting is refused.
            using (new SqliteConnection())
            {
            }
            MemoryStatisticsOff = raw.sqlite3_config(raw.SQLITE_CONFIG_MEMSTATUS, 0);
        }
    }
}
