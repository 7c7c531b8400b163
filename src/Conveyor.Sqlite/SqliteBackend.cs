using Conveyor.Backends;
using Conveyor.Sql;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Conveyor.Sqlite;

/// <summary>
/// The embedded backend: one SQLite file in WAL mode plays the queue, store and coordination roles.
/// Writes go through one writer per process with group commit; reads use pooled connections. Notifications reach
/// this process at once and the others on the machine by Unix domain datagram sockets (<see cref="SqliteNotifier"/>).
/// </summary>
public sealed partial class SqliteBackend : IConveyorBackend, IQueueBackend, ITaskStore, ICoordinationBackend, IScheduleStore, IUniqueKeyStore, IDisposable
{
    private readonly SqliteBackendOptions _options;
    private readonly TimeProvider _time;
    private readonly string _connectionString;
    private readonly Lazy<SqliteWriter> _writer;
    // Queues whose row is committed: enqueues skip the insert for them. Filled only after a commit.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, bool> _knownQueues = new(StringComparer.Ordinal);
    private readonly SqliteNotifier _notifier;
    private int _migrated;

    /// <summary>Opens (creating if needed) the database at <see cref="SqliteBackendOptions.Path"/>.</summary>
    public SqliteBackend(SqliteBackendOptions options, TimeProvider? time = null, ILogger<SqliteBackend>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        SqliteProcessSettings.Apply(options.KeepMemoryStatistics);
        _options = options;
        _time = time ?? TimeProvider.System;
        var fullPath = System.IO.Path.GetFullPath(options.Path);
        var folder = System.IO.Path.GetDirectoryName(fullPath);
        CreatePrivately(fullPath, folder);
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = fullPath,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Pooling = true,
            DefaultTimeout = (int)Math.Ceiling(options.BusyTimeout.TotalSeconds),
        }.ToString();
        _notifier = new SqliteNotifier(fullPath, logger ?? (ILogger)NullLogger<SqliteBackend>.Instance);
        // After each commit the writer sends the ready notifications its operations kept: one per queue and peer.
        _writer = new Lazy<SqliteWriter>(() => new SqliteWriter(_connectionString, _options, _notifier.FlushReady), LazyThreadSafetyMode.ExecutionAndPublication);
        DatabasePath = fullPath;
        // ShortFetchMeansEmpty: the fetch reads every queue in one transaction under the write lock.
        Capabilities = new()
        {
            Reach = BackendReach.Machine,
            CrossProcessNotifications = SqliteNotifier.IsSupported,
            MaxNotificationPayload = SqliteNotifier.MaxPayload,
            ShortFetchMeansEmpty = true,
        };
    }

    /// <summary>
    /// Creates the database's folder (0700) and an empty database file (0600) when they do not exist, so that task
    /// arguments and results are readable by this user alone; SQLite gives the <c>-wal</c> and <c>-shm</c> files the
    /// database file's permissions. Existing files and folders keep theirs (<c>conveyor doctor</c> reports them).
    /// </summary>
    private static void CreatePrivately(string path, string? folder)
    {
        if (OperatingSystem.IsWindows())
        {
            if (!string.IsNullOrEmpty(folder))
            {
                Directory.CreateDirectory(folder);
            }
            return;
        }
        if (!string.IsNullOrEmpty(folder) && !Directory.Exists(folder))
        {
            Directory.CreateDirectory(folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        if (!File.Exists(path))
        {
            try
            {
                using var file = new FileStream(path, new FileStreamOptions
                {
                    Mode = FileMode.CreateNew,
                    Access = FileAccess.Write,
                    UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
                });
            }
            catch (IOException) when (File.Exists(path))
            {
                // Another process created it first: it made it the same way, or the user did.
            }
        }
    }

    /// <summary>Full path of the database file.</summary>
    public string DatabasePath { get; }

    /// <inheritdoc />
    public string Name => "sqlite";
    /// <inheritdoc />
    public IQueueBackend Queue => this;
    /// <inheritdoc />
    public ITaskStore Store => this;
    /// <inheritdoc />
    public ICoordinationBackend Coordination => this;

    /// <inheritdoc />
    public IScheduleStore Schedules => this;

    /// <inheritdoc />
    public IUniqueKeyStore UniqueKeys => this;
    /// <inheritdoc />
    public INotifier Notifier => _notifier;
    /// <inheritdoc />
    /// <remarks>Cross-process notifications wherever there are Unix domain sockets (not on Windows: docs/sqlite.md).</remarks>
    public BackendCapabilities Capabilities { get; }

    private SqliteWriter Writer => _writer.Value;

    /// <inheritdoc />
    public async Task MigrateAsync(CancellationToken cancellationToken)
    {
        await Writer.RunAsync(w => SqliteSchema.Apply(w.Connection)).WaitAsync(cancellationToken).ConfigureAwait(false);
        Volatile.Write(ref _migrated, 1);
    }

    /// <summary>The schema version of the database file.</summary>
    public async Task<int> GetSchemaVersionAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA user_version";
        return Convert.ToInt32(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false), System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <inheritdoc />
    public async Task<BackendHealth> CheckHealthAsync(CancellationToken cancellationToken)
    {
        try
        {
            var version = await GetSchemaVersionAsync(cancellationToken).ConfigureAwait(false);
            if (version < SqliteSchema.LatestVersion)
            {
                return new BackendHealth(false, $"SQLite {DatabasePath}: schema version {version}, expected {SqliteSchema.LatestVersion}; run 'conveyor migrate'");
            }
            return new BackendHealth(true, $"SQLite {DatabasePath} (schema {version}, synchronous={_options.Synchronous.ToString().ToUpperInvariant()})");
        }
        catch (SqliteException ex)
        {
            return new BackendHealth(false, $"SQLite {DatabasePath}: {ex.Message}");
        }
    }

    /// <inheritdoc />
    /// <remarks>The file is locked past the busy timeout (SQLITE_BUSY, SQLITE_LOCKED), cannot be opened, or its disk
    /// fails or is full (SQLITE_CANTOPEN, SQLITE_IOERR, SQLITE_FULL): the same request may succeed later.</remarks>
    public string? GetUnavailableBackend(Exception exception) =>
        exception is SqliteException { SqliteErrorCode: 5 or 6 or 10 or 13 or 14 } ? Name : null;

    private async Task<SqliteConnection> OpenReadAsync(CancellationToken cancellationToken)
    {
        var connection = new SqliteConnection(_connectionString);
        await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
        return connection;
    }

    /// <summary>After a commit that made work ready in <paramref name="queue"/> (empty: any queue, or not known):
    /// notifies this process's workers at once and the other processes' by a datagram each.</summary>
    private void Ready(string queue)
    {
        _notifier.Ready(queue);
        _notifier.FlushReady();
    }

    private long Now() => _time.GetUtcNow().ToUnixTimeMilliseconds();

    private static object Db(object? value) => value ?? DBNull.Value;

    private static byte[] IdBytes(Guid id) => id.ToByteArray(bigEndian: true);

    private static Guid ReadId(SqliteDataReader reader, int ordinal) => new(reader.GetFieldValue<byte[]>(ordinal), bigEndian: true);

    private static DateTimeOffset FromMs(long ms) => DateTimeOffset.FromUnixTimeMilliseconds(ms);

    /// <summary>Stops the writer after the operations already queued, and removes this instance's notification socket.</summary>
    public void Dispose()
    {
        if (_writer.IsValueCreated)
        {
            _writer.Value.Dispose();
        }
        _notifier.Dispose();
        using var connection = new SqliteConnection(_connectionString);
        SqliteConnection.ClearPool(connection);
    }
}
