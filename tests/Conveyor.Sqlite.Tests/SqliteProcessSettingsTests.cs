using Conveyor.Backends;

namespace Conveyor.Sqlite.Tests;

/// <summary>The first backend turns SQLite's memory statistics off for the process (SqliteProcessSettings).</summary>
public sealed class SqliteProcessSettingsTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "conveyor-memstatus-" + Guid.NewGuid().ToString("N")[..12]);

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public async Task A_backend_turns_sqlites_memory_statistics_off_unless_sqlite_already_ran_in_the_process()
    {
        using var backend = new SqliteBackend(new SqliteBackendOptions { Path = Path.Combine(_root, "conveyor.db") });
        await backend.MigrateAsync(CancellationToken.None);
        await backend.EnqueueAsync([new TaskMessage { Id = Guid.NewGuid(), Task = "t", Queue = "default", CreatedAt = DateTimeOffset.UtcNow }], CancellationToken.None);

        // 0: applied before the process's first connection; 21 (SQLITE_MISUSE): another test opened SQLite first.
        Assert.Contains(SqliteProcessSettings.MemoryStatisticsOff, new int?[] { 0, 21 });
        if (SqliteProcessSettings.MemoryStatisticsOff == 0)
        {
            // With the statistics off SQLite counts nothing, although it holds pages and statements here.
            Assert.Equal(0, SQLitePCL.raw.sqlite3_memory_used());
        }
        else
        {
            Assert.True(SQLitePCL.raw.sqlite3_memory_used() > 0);
        }
    }
}
