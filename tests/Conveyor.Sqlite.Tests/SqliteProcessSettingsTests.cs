using System.Runtime.CompilerServices;
using Conveyor.Backends;

namespace Conveyor.Sqlite.Tests;

/// <summary>The first backend turns SQLite's memory statistics off for the process (SqliteProcessSettings).</summary>
public sealed class SqliteProcessSettingsTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "conveyor-memstatus-" + Guid.NewGuid().ToString("N")[..12]);

    /// <summary>Runs before any test of this assembly opens SQLite, as the first backend's constructor does in a process
    /// (a test that opened a connection first would make SQLite refuse the setting).</summary>
    [ModuleInitializer]
    internal static void ApplyBeforeAnyConnection() => SqliteProcessSettings.Apply(keepMemoryStatistics: false);

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public async Task Sqlites_memory_statistics_are_off_for_the_process()
    {
        using var backend = new SqliteBackend(new SqliteBackendOptions { Path = Path.Combine(_root, "conveyor.db"), KeepMemoryStatistics = true });
        await backend.MigrateAsync(CancellationToken.None);
        await backend.EnqueueAsync([new TaskMessage { Id = Guid.NewGuid(), Task = "t", Queue = "default", CreatedAt = DateTimeOffset.UtcNow }], CancellationToken.None);

        // SQLite took the setting (0, not SQLITE_MISUSE), and counts nothing although it holds pages and statements here.
        // A later backend asking to keep them changes nothing: the first decides.
        Assert.Equal(0, SqliteProcessSettings.MemoryStatisticsOff);
        Assert.Equal(0, SQLitePCL.raw.sqlite3_memory_used());
    }
}
