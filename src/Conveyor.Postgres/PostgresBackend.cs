using Conveyor.Backends;
using Conveyor.Sql;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Conveyor.Postgres;

/// <summary>
/// PostgreSQL plays the queue, store, coordination and notifier roles: fetches lease rows with
/// <c>FOR UPDATE SKIP LOCKED</c> and return at once, notifications travel by <c>LISTEN/NOTIFY</c> (one dedicated
/// listening connection per backend, opened by the first subscription), and every batch call is one round trip
/// (docs/architecture.md).
/// Every time it stores or compares comes from the injected <see cref="TimeProvider"/>, never the server's clock.
/// </summary>
public sealed partial class PostgresBackend : IConveyorBackend, IQueueBackend, ITaskStore, ICoordinationBackend, IScheduleStore, IUniqueKeyStore, IAsyncDisposable, IDisposable
{
    private readonly PostgresBackendOptions _options;
    private readonly TimeProvider _time;
    private readonly NpgsqlDataSource _dataSource;
    private readonly PostgresDialect _dialect;
    // Every statement names its tables with the schema, never through the connections' search_path: a data source the
    // app owns keeps its own settings (UsePostgresFromServices).
    private readonly string _tasks;
    private readonly string _queues;
    private readonly string _workers;
    private readonly string _leaders;
    private readonly string _schedules;
    private readonly string _uniqueKeys;
    private readonly string _apiKeys;
    private readonly string _auditLog;
    private readonly string _users;
    private readonly string _rateLimits;
    private readonly string _concurrencySlots;
    private readonly string _workflows;
    private readonly string _workflowEdges;
    private readonly string _insertSql;
    private readonly string _fetchSql;
    private readonly string _completeSql;
    private readonly string _startSql;
    private readonly PostgresNotifier _notifier;
    private readonly PostgresEnqueueGroups _enqueueGroups;
    private readonly string _host;
    private readonly bool _ownsDataSource;
    private int _disposed;

    /// <summary>Builds the backend on a data source of its own, from <see cref="PostgresBackendOptions.ConnectionString"/>;
    /// no connection is opened until the first call.</summary>
    public PostgresBackend(PostgresBackendOptions options, TimeProvider? time = null, ILogger<PostgresBackend>? logger = null)
        : this(options, null, time, logger)
    {
    }

    /// <summary>Builds the backend on <paramref name="dataSource"/>, the app's own (not disposed with the backend, and its
    /// connections' settings left as they are; <see cref="PostgresBackendOptions.ConnectionString"/> is then not used),
    /// or on one of its own when null.</summary>
    public PostgresBackend(PostgresBackendOptions options, NpgsqlDataSource? dataSource, TimeProvider? time = null, ILogger<PostgresBackend>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (dataSource is null && string.IsNullOrWhiteSpace(options.ConnectionString))
        {
            throw new ArgumentException("PostgresBackendOptions.ConnectionString is required.", nameof(options));
        }
        if (!PostgresBackendOptions.IsValidSchema(options.Schema))
        {
            throw new ArgumentException($"Schema '{options.Schema}' is not valid: use lower-case letters, digits and '_', at most 50 characters, starting with a letter or '_'.", nameof(options));
        }
        _options = options;
        _time = time ?? TimeProvider.System;
        _dialect = new PostgresDialect(options.Schema);
        _tasks = _dialect.Table("tasks");
        _queues = _dialect.Table("queues");
        _workers = _dialect.Table("workers");
        _leaders = _dialect.Table("leaders");
        _schedules = _dialect.Table("schedules");
        _uniqueKeys = _dialect.Table("unique_keys");
        _apiKeys = _dialect.Table("api_keys");
        _auditLog = _dialect.Table("audit_log");
        _users = _dialect.Table("users");
        _rateLimits = _dialect.Table("rate_limits");
        _concurrencySlots = _dialect.Table("concurrency_slots");
        _workflows = _dialect.Table("workflows");
        _workflowEdges = _dialect.Table("workflow_edges");
        _insertSql = InsertSql(_tasks);
        _fetchSql = FetchSql(_tasks, _queues);
        _completeSql = CompleteStepsSql(_tasks, _workflows, _workflowEdges);
        _startSql = StartSql(_tasks);
        _ownsDataSource = dataSource is null;
        _dataSource = dataSource ?? CreateDataSource(options.ConnectionString);
        var server = new NpgsqlConnectionStringBuilder(_dataSource.ConnectionString);
        _host = $"{server.Host}:{server.Port}/{server.Database}";
        Channel = options.Schema + "_wake";
        ILogger log = logger ?? NullLogger<PostgresBackend>.Instance;
        _notifier = new PostgresNotifier(_dataSource, Channel, options.MaxReconnectDelay, log);
        _enqueueGroups = new PostgresEnqueueGroups(InsertAsync);
    }

    private static NpgsqlDataSource CreateDataSource(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(PostgresConnectionString.Normalize(connectionString));
        // The hot statements are few and fixed: prepare them on each connection once instead of parsing and
        // planning them on every call (unless the caller's connection string chose otherwise).
        if (builder.MaxAutoPrepare == 0)
        {
            builder.MaxAutoPrepare = 32;
            builder.AutoPrepareMinUsages = 2;
        }
        if (string.IsNullOrEmpty(builder.RootCertificate) || builder.SslMode is not (SslMode.VerifyCA or SslMode.VerifyFull))
        {
            return NpgsqlDataSource.Create(builder);
        }
        // A private CA (sslrootcert): verified by Conveyor's own callback, whose refusal names the setting and says why
        // (Npgsql's own says only that the certificate was rejected). Npgsql takes a callback of the caller's only with
        // sslmode=require (TLS required, its own checks off): the callback does what verify-ca or verify-full asked.
        var authorities = TrustedCertificateAuthorities.Load(builder.RootCertificate, "sslrootcert");
        var checkHostName = builder.SslMode == SslMode.VerifyFull;
        var host = builder.Host ?? "";
        builder.RootCertificate = null;
        builder.SslMode = SslMode.Require;
        var dataSource = new NpgsqlDataSourceBuilder(builder.ConnectionString);
        dataSource.UseSslClientAuthenticationOptionsCallback(tls =>
            tls.RemoteCertificateValidationCallback = authorities.CreateCallback("PostgreSQL", tls.TargetHost ?? host, checkHostName));
        return dataSource.Build();
    }

    /// <summary>Host, port and database, without credentials: for logs and status lines.</summary>
    public string Server => _host;

    /// <summary>The schema holding the tables.</summary>
    public string Schema => _options.Schema;

    /// <summary>The PostgreSQL channel that carries every notification of this schema (the name is kept from when it
    /// carried only wake-ups, so that processes of an earlier version and this one still wake each other).</summary>
    internal string Channel { get; }

    /// <inheritdoc />
    public string Name => "postgres";
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
    public BackendCapabilities Capabilities { get; } = new()
    {
        Reach = BackendReach.Network,
        CrossProcessNotifications = true,
        MaxNotificationPayload = PostgresNotifier.MaxPayload,
    };

    /// <inheritdoc />
    public Task MigrateAsync(CancellationToken cancellationToken) => PostgresSchema.ApplyAsync(_dataSource, _options.Schema, cancellationToken);

    /// <summary>The applied schema version.</summary>
    public async Task<int> GetSchemaVersionAsync(CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        return await PostgresSchema.ReadVersionAsync(connection, _options.Schema, null, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<BackendHealth> CheckHealthAsync(CancellationToken cancellationToken)
    {
        try
        {
            var version = await GetSchemaVersionAsync(cancellationToken).ConfigureAwait(false);
            if (version < PostgresSchema.LatestVersion)
            {
                return new BackendHealth(false, $"PostgreSQL {_host} schema {_options.Schema}: version {version}, expected {PostgresSchema.LatestVersion}; run 'conveyor migrate'");
            }
            var warnings = new List<string>();
            if (_notifier.IsListenerBroken)
            {
                warnings.Add("the LISTEN connection is down; workers fall back to their poll until it reconnects");
            }
            var skew = await MeasureClockSkewAsync(warnings, cancellationToken).ConfigureAwait(false);
            return new BackendHealth(true, $"PostgreSQL {_host} schema {_options.Schema} (version {version})", warnings.Count > 0 ? warnings : null) { ClockSkew = skew };
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException or InvalidOperationException)
        {
            return new BackendHealth(false, $"PostgreSQL {_host}: {ex.Message}");
        }
    }

    /// <inheritdoc />
    /// <remarks>A connection that cannot be opened or broke (socket, I/O or timeout errors, which Npgsql marks
    /// transient), or a server that is shutting down, starting, or out of connections (SQLSTATE class 08, 57P01–57P03,
    /// 53300). Other transient errors (deadlocks, serialization failures) are not outages.</remarks>
    public string? GetUnavailableBackend(Exception exception) => exception switch
    {
        PostgresException e => e.SqlState.StartsWith("08", StringComparison.Ordinal) || e.SqlState is "57P01" or "57P02" or "57P03" or "53300" ? Name : null,
        NpgsqlException { IsTransient: true } => Name,
        _ => null,
    };

    private async Task<TimeSpan> MeasureClockSkewAsync(List<string> warnings, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = new NpgsqlCommand("SELECT clock_timestamp()", connection);
        // The real clock, not the injected one: skew is between machines.
        var before = DateTimeOffset.UtcNow;
        var engineTime = (DateTime)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        var after = DateTimeOffset.UtcNow;
        return BackendHealth.MeasureSkew(before, new DateTimeOffset(DateTime.SpecifyKind(engineTime, DateTimeKind.Utc)), after, "PostgreSQL", warnings);
    }

    private async Task<NpgsqlConnection> OpenAsync(CancellationToken cancellationToken) =>
        await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);

    private static NpgsqlCommand Command(NpgsqlConnection connection, string sql) => new(sql, connection);

    /// <summary>After a commit that made work ready in <paramref name="queue"/> (empty: any queue, or not known):
    /// notifies this process's workers now, other processes' by a coalesced NOTIFY.</summary>
    private void Ready(string queue) => _notifier.Ready(queue);

    private long Now() => _time.GetUtcNow().ToUnixTimeMilliseconds();

    private static object Db(object? value) => value ?? DBNull.Value;

    private static DateTimeOffset FromMs(long ms) => DateTimeOffset.FromUnixTimeMilliseconds(ms);

    private static DateTimeOffset? FromMs(NpgsqlDataReader reader, int ordinal) =>
        reader.IsDBNull(ordinal) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(ordinal));

    private static string? ReadString(NpgsqlDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : reader.GetString(ordinal);

    /// <summary>Drops the schema and everything in it. For tests and tear-down; irreversible.</summary>
    public async Task DropSchemaAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, $"DROP SCHEMA IF EXISTS \"{_options.Schema}\" CASCADE");
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Stops the listener and closes the pool, unless the pool is the app's. Safe to call more than once (DI may
    /// own it under two registrations).</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }
        await _enqueueGroups.DisposeAsync().ConfigureAwait(false);
        await _notifier.DisposeAsync().ConfigureAwait(false);
        if (_ownsDataSource)
        {
            await _dataSource.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Stops the listener and closes the pool, unless the pool is the app's.</summary>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();
}
