using Conveyor.Backends;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Conveyor.Postgres;

/// <summary>
/// One dedicated connection that runs <c>LISTEN</c> on the backend's channel, started by the first subscription, and
/// delivers other instances' notifications to this process's subscribers. When the connection breaks it reconnects
/// with a backoff (100 ms doubling up to the configured maximum) and, once it listens again, delivers
/// <see cref="Notification.Missed"/> on every subscribed channel, since notifications sent meanwhile were lost;
/// workers also look for work every fallback poll, so a broken listener delays work but never strands it.
/// </summary>
internal sealed partial class PostgresListener : IAsyncDisposable
{
    /// <summary>How long the first subscription waits for LISTEN before it returns anyway (the server is down or
    /// slow): its subscriber hears Missed once LISTEN runs.</summary>
    private static readonly TimeSpan FirstListenWait = TimeSpan.FromSeconds(5);

    private readonly NpgsqlDataSource _dataSource;
    private readonly string _channel;
    private readonly string _self;
    private readonly NotificationHub _hub;
    private readonly TimeSpan _maxDelay;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _firstListen = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Lock _gate = new();
    private Task? _loop;
    private volatile bool _broken;
    // Set when a subscription returned before LISTEN ran: it may have missed notifications.
    private volatile bool _subscribedUnheard;

    public PostgresListener(NpgsqlDataSource dataSource, string channel, string self, NotificationHub hub, TimeSpan maxDelay, ILogger logger)
    {
        _dataSource = dataSource;
        _channel = channel;
        _self = self;
        _hub = hub;
        _maxDelay = maxDelay <= TimeSpan.Zero ? TimeSpan.FromSeconds(5) : maxDelay;
        _logger = logger;
    }

    /// <summary>True while the listening connection is down.</summary>
    public bool IsBroken => _broken;

    /// <summary>Starts the listener once and waits (up to <see cref="FirstListenWait"/>) until it listens, so that a
    /// notification sent after this returns is not missed.</summary>
    public async Task EnsureListeningAsync(CancellationToken cancellationToken)
    {
        if (_loop is null)
        {
            lock (_gate)
            {
                _loop ??= Task.Run(() => RunAsync(_stop.Token), CancellationToken.None);
            }
        }
        if (!_firstListen.Task.IsCompleted)
        {
            try
            {
                await _firstListen.Task.WaitAsync(FirstListenWait, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                _subscribedUnheard = true;
                if (_firstListen.Task.IsCompleted)
                {
                    // It began listening just now; whether this subscription was in time is unknown.
                    _hub.DeliverMissed();
                }
            }
        }
    }

    /// <summary>Delivers one NOTIFY payload: <c>sender:sequence:channel:payload</c>, skipping this instance's own.</summary>
    private void OnNotification(string envelope)
    {
        var senderEnd = envelope.IndexOf(':', StringComparison.Ordinal);
        if (senderEnd < 0)
        {
            // A bare sender id: the wake-up of a process of an earlier version, for any queue.
            if (envelope != _self)
            {
                _hub.Deliver(new Notification(NotifierChannels.Ready, ""));
            }
            return;
        }
        if (envelope.AsSpan(0, senderEnd).SequenceEqual(_self))
        {
            // Delivered in this process when it was published.
            return;
        }
        var sequenceEnd = envelope.IndexOf(':', senderEnd + 1);
        var channelEnd = sequenceEnd < 0 ? -1 : envelope.IndexOf(':', sequenceEnd + 1);
        if (channelEnd < 0)
        {
            return;
        }
        _hub.Deliver(new Notification(envelope[(sequenceEnd + 1)..channelEnd], envelope[(channelEnd + 1)..]));
    }

    private async Task RunAsync(CancellationToken stop)
    {
        var delay = TimeSpan.FromMilliseconds(100);
        var listenedBefore = false;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await using var connection = await _dataSource.OpenConnectionAsync(stop).ConfigureAwait(false);
                connection.Notification += (_, e) => OnNotification(e.Payload);
                await using (var listen = new NpgsqlCommand($"LISTEN \"{_channel}\"", connection))
                {
                    await listen.ExecuteNonQueryAsync(stop).ConfigureAwait(false);
                }
                if (_broken)
                {
                    _broken = false;
                    LogReconnected(_logger, _channel);
                }
                delay = TimeSpan.FromMilliseconds(100);
                _firstListen.TrySetResult();
                // Notifications sent while no one listened were lost: subscribers look again.
                if (listenedBefore || _subscribedUnheard)
                {
                    _hub.DeliverMissed();
                }
                listenedBefore = true;
                try
                {
                    while (true)
                    {
                        await connection.WaitAsync(stop).ConfigureAwait(false);
                    }
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                    await UnlistenAsync(connection).ConfigureAwait(false);
                    throw;
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                // Any failure (network, server restart, pool exhausted) ends in a reconnect, never a dead listener.
                if (!_broken)
                {
                    _broken = true;
                    LogBroken(_logger, _channel, delay, ex);
                }
                try
                {
                    await Task.Delay(delay, stop).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                delay = TimeSpan.FromTicks(Math.Min(_maxDelay.Ticks, delay.Ticks * 2));
            }
        }
    }

    /// <summary>Stops listening before the connection goes back to its pool, which may be the app's: a pool that does
    /// not reset its connections (<c>No Reset On Close</c>) would hand it on still listening. Best effort: what fails
    /// here has mostly broken the connection, and a broken connection is not pooled.</summary>
    private async Task UnlistenAsync(NpgsqlConnection connection)
    {
        try
        {
            await using var unlisten = new NpgsqlCommand($"UNLISTEN \"{_channel}\"", connection) { CommandTimeout = 5 };
            await unlisten.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException or TimeoutException or IOException)
        {
            LogUnlistenFailed(_logger, _channel, ex);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_loop is not null)
        {
            try
            {
                // Not for longer: the UNLISTEN is best effort, and on a server that does not answer Npgsql's time limits
                // (command timeout, cancellation) held up a worker's exit for 20 s.
                await _loop.WaitAsync(DisposeWait).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
            catch (TimeoutException)
            {
                // The loop still runs on _stop's token: it is left undisposed, with the connection, to the process's end.
                return;
            }
        }
        _stop.Dispose();
    }

    /// <summary>Longest a dispose waits for the listening loop to UNLISTEN and end.</summary>
    private static readonly TimeSpan DisposeWait = TimeSpan.FromSeconds(1);

    [LoggerMessage(EventId = 4001, Level = LogLevel.Warning, Message = "PostgreSQL LISTEN connection on {Channel} broke; reconnecting with backoff (first retry in {Delay})")]
    private static partial void LogBroken(ILogger logger, string channel, TimeSpan delay, Exception exception);

    [LoggerMessage(EventId = 4004, Level = LogLevel.Debug, Message = "PostgreSQL UNLISTEN on {Channel} failed as the listener stopped")]
    private static partial void LogUnlistenFailed(ILogger logger, string channel, Exception exception);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Information, Message = "PostgreSQL LISTEN connection on {Channel} is back")]
    private static partial void LogReconnected(ILogger logger, string channel);
}
