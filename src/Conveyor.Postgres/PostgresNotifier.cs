using Microsoft.Extensions.Logging;
using Npgsql;

namespace Conveyor.Postgres;

/// <summary>
/// Sends the cross-process wake-up (<c>NOTIFY</c>) after work became ready, outside the transaction that made it
/// ready, and coalesces: however many requests arrive while one NOTIFY is in flight, one more follows it.
/// <para>
/// Why not NOTIFY inside the enqueue's transaction: PostgreSQL serialises the commits of every transaction
/// that notifies (a database-wide lock is held from pre-commit until the commit record is flushed), so each
/// enqueue's fsync queued behind the last one and enqueue throughput was bounded by one fsync at a time —
/// about 1,300/s here, with 16 callers no faster than one, and enqueue-to-start latency of ~200 ms at
/// 500/s. The wake-up is a hint, not data: it is sent with <c>synchronous_commit = off</c> (no fsync wait),
/// and one lost in a crash only delays a fetch to its own timeout. Fetches in this process are woken
/// directly, without a round trip.
/// </para>
/// </summary>
internal sealed partial class PostgresNotifier : IAsyncDisposable
{
    private const int Idle = 0;
    private const int Sending = 1;
    private const int SendingAndRequested = 2;

    private readonly NpgsqlDataSource _dataSource;
    private readonly string _channel;
    private readonly string _sender;
    private readonly ILogger _logger;
    private int _state;
    private volatile bool _disposed;
    private Task _running = Task.CompletedTask;

    public PostgresNotifier(NpgsqlDataSource dataSource, string channel, string sender, ILogger logger)
    {
        _dataSource = dataSource;
        _channel = channel;
        _sender = sender;
        _logger = logger;
    }

    /// <summary>Asks for a NOTIFY after this call; returns at once.</summary>
    public void Request()
    {
        while (!_disposed)
        {
            var state = Volatile.Read(ref _state);
            if (state == Idle)
            {
                if (Interlocked.CompareExchange(ref _state, Sending, Idle) == Idle)
                {
                    _running = Task.Run(RunAsync);
                    return;
                }
            }
            else if (state == SendingAndRequested
                || Interlocked.CompareExchange(ref _state, SendingAndRequested, Sending) == Sending)
            {
                // The loop sees the flag after its current NOTIFY and sends another.
                return;
            }
        }
    }

    private async Task RunAsync()
    {
        while (true)
        {
            // Requests from here on are covered by the NOTIFY about to be sent.
            Interlocked.Exchange(ref _state, Sending);
            await SendAsync().ConfigureAwait(false);
            if (Interlocked.CompareExchange(ref _state, Idle, Sending) == Sending)
            {
                return;
            }
        }
    }

    private async Task SendAsync()
    {
        try
        {
            await using var connection = await _dataSource.OpenConnectionAsync().ConfigureAwait(false);
            // set_config(…, true) lasts until this statement's implicit transaction commits, which it governs.
            // The payload names the sender, whose own listener ignores it: its fetches were woken directly.
            await using var command = new NpgsqlCommand("SELECT set_config('synchronous_commit', 'off', true), pg_notify(@channel, @sender)", connection);
            command.Parameters.AddWithValue("channel", _channel);
            command.Parameters.AddWithValue("sender", _sender);
            await command.ExecuteNonQueryAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException or InvalidOperationException or ObjectDisposedException)
        {
            // Other processes' fetches end at their own timeout; the listener wakes everyone when it reconnects.
            LogNotifyFailed(_logger, _channel, ex);
        }
    }

    /// <summary>Waits for a NOTIFY in flight; later requests are ignored.</summary>
    public async ValueTask DisposeAsync()
    {
        _disposed = true;
        await _running.ConfigureAwait(false);
    }

    [LoggerMessage(EventId = 4003, Level = LogLevel.Debug, Message = "PostgreSQL NOTIFY on {Channel} failed; other processes' waiting fetches fall back to their timeout")]
    private static partial void LogNotifyFailed(ILogger logger, string channel, Exception exception);
}
