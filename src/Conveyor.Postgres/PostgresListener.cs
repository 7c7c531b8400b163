using Microsoft.Extensions.Logging;
using Npgsql;

namespace Conveyor.Postgres;

/// <summary>
/// One dedicated connection that runs <c>LISTEN</c> on the backend's channel and wakes every waiting fetch
/// of this process when a notification arrives. When the connection breaks it reconnects with a backoff
/// (100 ms doubling up to the configured maximum) and wakes everyone after it is back, since
/// notifications sent meanwhile were lost; waiting fetches also end at their own timeout, so a broken
/// listener delays work but never strands it.
/// </summary>
internal sealed partial class PostgresListener : IAsyncDisposable
{
    private readonly NpgsqlDataSource _dataSource;
    private readonly string _channel;
    private readonly string _self;
    private readonly TimeSpan _maxDelay;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _firstListen = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Lock _gate = new();
    private volatile TaskCompletionSource _wake = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task? _loop;
    private volatile bool _broken;

    public PostgresListener(NpgsqlDataSource dataSource, string channel, string self, TimeSpan maxDelay, ILogger logger)
    {
        _dataSource = dataSource;
        _channel = channel;
        _self = self;
        _maxDelay = maxDelay <= TimeSpan.Zero ? TimeSpan.FromSeconds(5) : maxDelay;
        _logger = logger;
    }

    /// <summary>True while the listening connection is down.</summary>
    public bool IsBroken => _broken;

    /// <summary>Completes at the next wake-up. Take it before looking for work, then wait on it.</summary>
    public Task Signal => _wake.Task;

    /// <summary>Starts the listener once and waits (up to <paramref name="maxWait"/>) until it listens, so that a
    /// notification sent after this returns is not missed.</summary>
    public async Task EnsureListeningAsync(TimeSpan maxWait, CancellationToken cancellationToken)
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
                await _firstListen.Task.WaitAsync(maxWait, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                // Not listening yet: the fetch's own timeout covers it.
            }
        }
    }

    /// <summary>Wakes every waiting fetch of this process.</summary>
    public void Wake() => Interlocked.Exchange(ref _wake, new(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();

    private async Task RunAsync(CancellationToken stop)
    {
        var delay = TimeSpan.FromMilliseconds(100);
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await using var connection = await _dataSource.OpenConnectionAsync(stop).ConfigureAwait(false);
                // A notification this process sent woke its fetches already (PostgresNotifier).
                connection.Notification += (_, e) =>
                {
                    if (e.Payload != _self)
                    {
                        Wake();
                    }
                };
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
                // Work enqueued while no one listened sent notifications nobody heard.
                Wake();
                while (true)
                {
                    await connection.WaitAsync(stop).ConfigureAwait(false);
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
                Wake();
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

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_loop is not null)
        {
            try
            {
                await _loop.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
        _stop.Dispose();
        Wake();
    }

    [LoggerMessage(EventId = 4001, Level = LogLevel.Warning, Message = "PostgreSQL LISTEN connection on {Channel} broke; reconnecting with backoff (first retry in {Delay})")]
    private static partial void LogBroken(ILogger logger, string channel, TimeSpan delay, Exception exception);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Information, Message = "PostgreSQL LISTEN connection on {Channel} is back")]
    private static partial void LogReconnected(ILogger logger, string channel);
}
