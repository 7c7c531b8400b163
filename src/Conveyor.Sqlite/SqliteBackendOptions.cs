namespace Conveyor.Sqlite;

/// <summary>The <c>synchronous</c> setting of SQLite in WAL mode. See docs/sqlite.md.</summary>
public enum SqliteSynchronous
{
    /// <summary>WAL is synced at checkpoints only. A committed task survives a crash or kill -9 of the
    /// process; a power loss or OS crash may lose the last transactions (never corrupts the file). Default.</summary>
    Normal,
    /// <summary>WAL is synced at every commit: committed tasks also survive a power loss; each commit costs an fsync.</summary>
    Full,
}

/// <summary>Settings of the SQLite backend.</summary>
public sealed class SqliteBackendOptions
{
    /// <summary>Database file. Default <c>data/conveyor.db</c>; its folder is created.</summary>
    public string Path { get; set; } = System.IO.Path.Combine("data", "conveyor.db");

    /// <summary>Durability of a commit. Default <see cref="SqliteSynchronous.Normal"/>.</summary>
    public SqliteSynchronous Synchronous { get; set; } = SqliteSynchronous.Normal;

    /// <summary>How long a statement waits for another process's write lock. Default 10 s.</summary>
    public TimeSpan BusyTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Most queued write operations joined into one transaction. Default 1,000.</summary>
    public int MaxOperationsPerTransaction { get; set; } = 1000;

    /// <summary>Leaves SQLite's memory statistics (<c>SQLITE_CONFIG_MEMSTATUS</c>) on. A process-wide setting, decided by the
    /// process's first backend before its first SQLite connection: by default Conveyor turns them off, because they make
    /// every allocation inside SQLite take a global mutex; <c>sqlite3_memory_used</c> then reports 0 and soft and hard heap
    /// limits have no effect. Set true where the process reads them. Default false.</summary>
    public bool KeepMemoryStatistics { get; set; }
}
