using System.Globalization;
using System.Text.Json;
using Conveyor.Backends;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using StackExchange.Redis;

namespace Conveyor.Redis;

/// <summary>
/// The Redis backend: Lua scripts over one multiplexed StackExchange.Redis connection play the queue,
/// store and coordination roles. Enqueue, fetch and complete are one script call (one round trip) per batch;
/// fetches never wait: the notifier (<see cref="RedisNotifier"/>, Redis pub/sub) tells workers when work is ready.
/// See docs/redis.md.
/// </summary>
public sealed partial class RedisBackend : IConveyorBackend, IQueueBackend, ITaskStore, ICoordinationBackend, IScheduleStore, IUniqueKeyStore, IAsyncDisposable, IDisposable
{
    private readonly RedisBackendOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _connectLock = new(1, 1);
    private readonly string _base;
    private readonly RedisKey _routeKey;
    private readonly bool _ownsConnection;
    private readonly RedisNotifier _notifier;
    private IConnectionMultiplexer? _connection;
    private (IReadOnlyList<string> Warnings, DateTimeOffset ReadAt)? _settingWarnings;

    /// <summary>Uses Redis at <see cref="RedisBackendOptions.Configuration"/>; connects on first use.</summary>
    public RedisBackend(RedisBackendOptions options, TimeProvider? time = null, ILogger<RedisBackend>? logger = null)
        : this(options, null, time, logger)
    {
    }

    /// <summary>Uses an existing connection (not disposed with the backend), or connects itself when null.</summary>
    public RedisBackend(RedisBackendOptions options, IConnectionMultiplexer? connection, TimeProvider? time = null, ILogger<RedisBackend>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentException.ThrowIfNullOrWhiteSpace(options.KeyPrefix);
        _options = options;
        _time = time ?? TimeProvider.System;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _connection = connection;
        _ownsConnection = connection is null;
        // The braces are a hash tag: Redis Cluster puts every key of a deployment in one slot, as scripts need.
        _base = "{" + options.KeyPrefix.TrimEnd(':') + "}:";
        _routeKey = _base + "seq";
        _notifier = new RedisNotifier(_base, ConnectAsync);
        Endpoint = RedisUrl.Redact(options.Configuration);
    }

    /// <summary>The configured server, password hidden.</summary>
    public string Endpoint { get; }

    /// <summary>The prefix every key starts with: <c>{prefix}:</c>.</summary>
    public string KeyBase => _base;

    /// <inheritdoc />
    public string Name => "redis";
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
        MaxNotificationPayload = RedisNotifier.MaxPayload,
        // The fetch script takes from every queue in one call.
        ShortFetchMeansEmpty = true,
    };

    /// <summary>Connects, subscribes to notifications and checks the server's settings; there is no schema to create.</summary>
    public async Task MigrateAsync(CancellationToken cancellationToken)
    {
        await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        _settingWarnings = null;
        foreach (var warning in await GetWarningsAsync().ConfigureAwait(false))
        {
            LogSettingWarning(_logger, warning);
        }
    }

    /// <inheritdoc />
    public async Task<BackendHealth> CheckHealthAsync(CancellationToken cancellationToken)
    {
        if (_connection is { IsConnected: false })
        {
            // Reconnecting: a PING would wait in StackExchange.Redis's backlog until its timeout (5 s) to say so.
            return new BackendHealth(false, $"Redis {Endpoint}: not connected; reconnecting with backoff");
        }
        try
        {
            var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
            var latency = await db.PingAsync().WaitAsync(cancellationToken).ConfigureAwait(false);
            var warnings = (await GetWarningsAsync().ConfigureAwait(false)).ToList();
            // The real clock, not the injected one: skew is between machines.
            var before = DateTimeOffset.UtcNow;
            var time = (RedisResult[])(await db.ExecuteAsync("TIME").WaitAsync(cancellationToken).ConfigureAwait(false))!;
            var after = DateTimeOffset.UtcNow;
            var engineTime = DateTimeOffset.FromUnixTimeSeconds((long)time[0]).AddTicks((long)time[1] * 10);
            var skew = BackendHealth.MeasureSkew(before, engineTime, after, "Redis", warnings);
            return new BackendHealth(true, $"Redis {Endpoint} (keys {_base}*, ping {latency.TotalMilliseconds:0.#} ms)", warnings.Count > 0 ? warnings : null) { ClockSkew = skew };
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException or ObjectDisposedException)
        {
            return new BackendHealth(false, $"Redis {Endpoint}: {ex.Message}");
        }
    }

    /// <inheritdoc />
    /// <remarks>No connection to Redis, or no answer within StackExchange.Redis's timeout.</remarks>
    public string? GetUnavailableBackend(Exception exception) =>
        exception is RedisConnectionException or RedisTimeoutException ? Name : null;

    /// <summary>Settings of the server that put tasks at risk: an eviction policy other than <c>noeviction</c>
    /// (Redis would drop queued tasks when full) or persistence off. Empty when CONFIG is not allowed.</summary>
    internal async Task<IReadOnlyList<string>> GetWarningsAsync()
    {
        // Read at most every 5 minutes: health probes come far more often, and the settings seldom change.
        if (_settingWarnings is { } cached && _time.GetUtcNow() - cached.ReadAt < TimeSpan.FromMinutes(5))
        {
            return cached.Warnings;
        }
        var warnings = await ReadSettingWarningsAsync().ConfigureAwait(false);
        _settingWarnings = (warnings, _time.GetUtcNow());
        return warnings;
    }

    private async Task<IReadOnlyList<string>> ReadSettingWarningsAsync()
    {
        var warnings = new List<string>();
        var connection = _connection;
        if (connection is null)
        {
            return warnings;
        }
        // The backend's own connection runs without admin commands: CONFIG GET goes through a connection of its own,
        // closed at once. A connection handed in by the application is used as it is (CONFIG may be refused there).
        ConnectionMultiplexer? admin = null;
        try
        {
            if (_options.Configuration is { Length: > 0 } configuration && _ownsConnection)
            {
                var options = RedisUrl.Parse(configuration);
                options.AllowAdmin = true;
                options.AbortOnConnectFail = true;
                options.ClientName = "conveyor-settings-check";
                admin = await ConnectionMultiplexer.ConnectAsync(options).ConfigureAwait(false);
            }
            var db = (admin ?? connection).GetDatabase();
            var policy = await ConfigGetAsync(db, "maxmemory-policy").ConfigureAwait(false);
            if (policy is not null && !string.Equals(policy, "noeviction", StringComparison.OrdinalIgnoreCase))
            {
                warnings.Add($"Redis maxmemory-policy is '{policy}': when Redis fills up it silently evicts keys, queued tasks included. Set 'maxmemory-policy noeviction' (docs/redis.md).");
            }
            var aof = await ConfigGetAsync(db, "appendonly").ConfigureAwait(false);
            if (aof is not null && !string.Equals(aof, "yes", StringComparison.OrdinalIgnoreCase))
            {
                warnings.Add("Redis appendonly is 'no': a restart of Redis loses every task written since the last snapshot. Set 'appendonly yes' and 'appendfsync everysec' (docs/redis.md).");
            }
        }
        catch (Exception ex) when (ex is RedisServerException or RedisCommandException or RedisConnectionException)
        {
            // CONFIG is disabled on some managed services (or refused to this user): nothing to check.
        }
        finally
        {
            if (admin is not null)
            {
                await admin.DisposeAsync().ConfigureAwait(false);
            }
        }
        return warnings;
    }

    private static async Task<string?> ConfigGetAsync(IDatabase db, string name)
    {
        var reply = await db.ExecuteAsync("CONFIG", "GET", name).ConfigureAwait(false);
        var items = (RedisResult[]?)reply;
        return items is { Length: >= 2 } ? (string?)items[1] : null;
    }

    private async ValueTask<IDatabase> GetDatabaseAsync(CancellationToken cancellationToken) =>
        (await ConnectAsync(cancellationToken).ConfigureAwait(false)).GetDatabase();

    /// <summary>The connection, once it is open, watched and subscribed to notifications.</summary>
    private async ValueTask<IConnectionMultiplexer> ConnectAsync(CancellationToken cancellationToken)
    {
        var connection = _connection;
        if (connection is not null && _attached)
        {
            return connection;
        }
        await _connectLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_connection is null)
            {
                var options = RedisUrl.Parse(_options.Configuration, out var authorities);
                _connection = await ConnectionMultiplexer.ConnectAsync(options).ConfigureAwait(false);
                // StackExchange.Redis keeps trying in the background and fails commands later, often without the cause:
                // a first attempt refused by the private CA's check says why now, naming the setting.
                if (!_connection.IsConnected && authorities?.LastRefusal is { } refusal)
                {
                    throw new BackendUnavailableException("redis", $"Redis {Endpoint} is unreachable: {refusal} Reconnecting in the background.");
                }
            }
            if (!_attached)
            {
                // Watched also when the connection was handed in: the notifier needs to hear of reconnects.
                _connection.ConnectionFailed += OnConnectionFailed;
                _connection.ConnectionRestored += OnConnectionRestored;
                await _notifier.AttachAsync(_connection).ConfigureAwait(false);
                _attached = true;
            }
            return _connection;
        }
        finally
        {
            _connectLock.Release();
        }
    }

    private volatile bool _attached;
    private int _down;
    private long _lossLoggedAt = long.MinValue / 2;

    /// <summary>How long after a loss logged a failure for LOADING is taken for part of the same outage.</summary>
    private const long LoadingAfterLossMs = 60_000;

    // Logged once per outage: StackExchange.Redis raises ConnectionFailed for each of its connections (commands,
    // pub/sub) and again for each failed reconnect attempt. A restarted Redis answers LOADING while it reads its data
    // back: each connection it has just restored fails again, once per connection (CI logged 26 of them in one second),
    // all part of the outage already logged.
    private void OnConnectionFailed(object? sender, ConnectionFailedEventArgs e)
    {
        var now = Environment.TickCount64;
        if (e.FailureType == ConnectionFailureType.Loading && now - Interlocked.Read(ref _lossLoggedAt) < LoadingAfterLossMs)
        {
            // Not a new outage either: no second "restored" follows.
            return;
        }
        if (Interlocked.Exchange(ref _down, 1) == 0)
        {
            Interlocked.Exchange(ref _lossLoggedAt, now);
            LogConnectionLost(_logger, Endpoint, e.FailureType.ToString(), e.Exception);
        }
    }

    private void OnConnectionRestored(object? sender, ConnectionFailedEventArgs e)
    {
        if (Interlocked.Exchange(ref _down, 0) == 1)
        {
            LogConnectionRestored(_logger, Endpoint);
        }
        // Notifications published while the connection was down are lost: subscribers look again.
        _notifier.Hub.DeliverMissed();
    }

    private Task<RedisResult> RunAsync(IDatabase db, string script, RedisValue[] args) =>
        // StackExchange.Redis sends EVALSHA once the script is known to the server, EVAL (which caches it) otherwise.
        db.ScriptEvaluateAsync(script, [_routeKey], args);

    private long Now() => _time.GetUtcNow().ToUnixTimeMilliseconds();

    private static string Ms(long ms) => ms.ToString(CultureInfo.InvariantCulture);

    private static string Ms(DateTimeOffset time) => Ms(time.ToUnixTimeMilliseconds());

    // Nullable argument: "" for null, "v" + value otherwise.
    private static RedisValue Opt(string? value) => value is null ? RedisValue.EmptyString : "v" + value;

    private static string IdText(Guid id) => id.ToString("D");

    /// <summary>Deletes every key under <see cref="KeyBase"/>: all this backend holds. For tests and tear-down; irreversible.</summary>
    public async Task DeleteKeysAsync(CancellationToken cancellationToken)
    {
        const int Batch = 1_000;
        var connection = await ConnectAsync(cancellationToken).ConfigureAwait(false);
        var db = connection.GetDatabase();
        // SCAN MATCH takes a glob: a prefix may hold its special characters.
        var pattern = string.Concat(_base.Select(c => c is '*' or '?' or '[' or ']' or '\\' ? "\\" + c : c.ToString())) + "*";
        foreach (var server in connection.GetServers().Where(s => !s.IsReplica))
        {
            var keys = new List<RedisKey>(Batch);
            await foreach (var key in server.KeysAsync(db.Database, pattern, Batch).WithCancellation(cancellationToken).ConfigureAwait(false))
            {
                keys.Add(key);
                if (keys.Count == Batch)
                {
                    await db.KeyDeleteAsync([.. keys]).ConfigureAwait(false);
                    keys.Clear();
                }
            }
            if (keys.Count > 0)
            {
                await db.KeyDeleteAsync([.. keys]).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Longest a dispose waits for the commands still out to complete.</summary>
    private static readonly TimeSpan CloseWait = TimeSpan.FromSeconds(1);

    /// <summary>Closes the connection when the backend opened it.</summary>
    public async ValueTask DisposeAsync()
    {
        Unwatch();
        if (_ownsConnection && _connection is not null)
        {
            try
            {
                // Commands still out get a moment to complete, not the client's time limits: on a server that does not
                // answer they held up a worker's exit by 5 s.
                await _connection.CloseAsync().WaitAsync(CloseWait).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                await _connection.CloseAsync(allowCommandsToComplete: false).ConfigureAwait(false);
            }
            _connection.Dispose();
        }
        else if (_attached)
        {
            await _notifier.DetachAsync().ConfigureAwait(false);
        }
        _connectLock.Dispose();
    }

    /// <summary>Closes the connection when the backend opened it.</summary>
    public void Dispose()
    {
        Unwatch();
        if (_ownsConnection)
        {
            _connection?.Dispose();
        }
        else if (_attached)
        {
            _notifier.Detach();
        }
        _connectLock.Dispose();
    }

    private void Unwatch()
    {
        if (_attached && _connection is { } connection)
        {
            connection.ConnectionFailed -= OnConnectionFailed;
            connection.ConnectionRestored -= OnConnectionRestored;
        }
    }

    [LoggerMessage(EventId = 3001, Level = LogLevel.Warning, Message = "Redis setting puts tasks at risk: {Warning}")]
    private static partial void LogSettingWarning(ILogger logger, string warning);

    [LoggerMessage(EventId = 3002, Level = LogLevel.Warning, Message = "Lost the connection to Redis {Endpoint} ({Failure}); reconnecting with backoff")]
    private static partial void LogConnectionLost(ILogger logger, string endpoint, string failure, Exception? exception);

    [LoggerMessage(EventId = 3003, Level = LogLevel.Information, Message = "Connection to Redis {Endpoint} restored")]
    private static partial void LogConnectionRestored(ILogger logger, string endpoint);
}
