using System.Collections.Concurrent;
using System.Globalization;
using Conveyor.Backends;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Conveyor.Postgres;

/// <summary>
/// PostgreSQL's notifier: <c>LISTEN/NOTIFY</c> on the backend's one channel (<c>&lt;schema&gt;_wake</c>), each NOTIFY
/// carrying an envelope <c>sender:sequence:channel:payload</c>. Subscribers in this process are served through a
/// <see cref="NotificationHub"/> at publish time, without a round trip, and the listener skips this instance's own
/// envelopes when they come back (<see cref="PostgresListener"/>).
/// <para>
/// Sending: one NOTIFY statement in flight at a time, carrying every notification asked for meanwhile (in order), so
/// that a burst costs one round trip. Ready notifications coalesce: however many enqueues make a queue ready while a
/// NOTIFY is in flight, one more notification per queue follows it (one for any queue when many are pending).
/// </para>
/// <para>
/// Why not NOTIFY inside the enqueue's transaction: PostgreSQL serialises the commits of every transaction
/// that notifies (a database-wide lock is held from pre-commit until the commit record is flushed), so each
/// enqueue's fsync queued behind the last one and enqueue throughput was bounded by one fsync at a time —
/// about 1,300/s here, with 16 callers no faster than one, and enqueue-to-start latency of ~200 ms at
/// 500/s. A notification is a hint, not data: it is sent after the commit that made work ready, in a transaction of
/// its own with <c>synchronous_commit = off</c> (no fsync wait), and one lost in a crash only delays a worker to its
/// fallback poll.
/// </para>
/// </summary>
internal sealed partial class PostgresNotifier : INotifier, IAsyncDisposable
{
    /// <summary>The largest payload in UTF-8 bytes. PostgreSQL takes NOTIFY payloads up to 7,999 bytes; the envelope
    /// takes up to 98 of them (sender 16, sequence up to 16, channel up to 63, three separators).</summary>
    public const int MaxPayload = 7900;

    private const int Idle = 0;
    private const int Sending = 1;
    private const int SendingAndRequested = 2;
    // More queues made ready during one NOTIFY than this are sent as one "any queue" notification.
    private const int MaxReadyQueuesPerSend = 8;
    // Notifications per NOTIFY statement: a burst beyond this takes more round trips, in order.
    private const int MaxPerSend = 500;

    private readonly NpgsqlDataSource _dataSource;
    private readonly string _channel;
    private readonly string _self;
    private readonly ILogger _logger;
    private readonly NotificationHub _hub = new();
    private readonly PostgresListener _listener;
    private readonly ConcurrentQueue<Outgoing> _outbox = new();
    private readonly HashSet<string> _pendingReady = new(StringComparer.Ordinal);
    private long _sequence;
    private int _state;
    private volatile bool _disposed;
    private Task _running = Task.CompletedTask;

    public PostgresNotifier(NpgsqlDataSource dataSource, string channel, TimeSpan maxReconnectDelay, ILogger logger)
    {
        _dataSource = dataSource;
        _channel = channel;
        _logger = logger;
        // Names this instance in its envelopes, so that its own listener can skip them.
        _self = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8));
        _listener = new PostgresListener(dataSource, channel, _self, _hub, maxReconnectDelay, logger);
    }

    /// <summary>True while the listening connection is down (it was up once, or is trying for the first time).</summary>
    public bool IsListenerBroken => _listener.IsBroken;

    /// <inheritdoc />
    public async ValueTask PublishAsync(string channel, string payload, CancellationToken cancellationToken)
    {
        NotifierPayload.Check(channel, payload, MaxPayload);
        if (payload.Contains('\0', StringComparison.Ordinal))
        {
            throw new ArgumentException("The payload holds a NUL character, which PostgreSQL text cannot carry.", nameof(payload));
        }
        ObjectDisposedException.ThrowIf(_disposed, this);
        _hub.Deliver(new Notification(channel, payload));
        var sent = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _outbox.Enqueue(new Outgoing(channel, payload, sent));
        Request();
        await sent.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async ValueTask<IAsyncDisposable> SubscribeAsync(string channel, Action<Notification> handler, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var subscription = _hub.Subscribe(channel, handler);
        // Returns once LISTEN runs, so that what other processes publish from now on reaches it; while the server
        // cannot be reached, returns after a bound instead, and the subscription hears Missed once LISTEN runs.
        await _listener.EnsureListeningAsync(cancellationToken).ConfigureAwait(false);
        return subscription;
    }

    /// <summary>Work became ready in <paramref name="queue"/> (empty: any queue or not known), by a commit that has
    /// returned: notifies this process's subscribers at once and asks for a NOTIFY to the others; returns at once.</summary>
    public void Ready(string queue)
    {
        _hub.Deliver(new Notification(NotifierChannels.Ready, queue));
        lock (_pendingReady)
        {
            _pendingReady.Add(queue);
        }
        Request();
    }

    /// <summary>Asks for a NOTIFY after this call; returns at once.</summary>
    private void Request()
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
        FailPending(new ObjectDisposedException(nameof(PostgresNotifier)));
    }

    private async Task RunAsync()
    {
        while (true)
        {
            // Requests from here on are covered by the NOTIFY about to be sent, or the next.
            Interlocked.Exchange(ref _state, Sending);
            while (await SendAsync().ConfigureAwait(false))
            {
            }
            if (Interlocked.CompareExchange(ref _state, Idle, Sending) == Sending)
            {
                return;
            }
        }
    }

    /// <summary>Sends what is pending in one statement; true when more was left than one statement carries.</summary>
    private async Task<bool> SendAsync()
    {
        var envelopes = new List<string>();
        var done = new List<TaskCompletionSource>();
        lock (_pendingReady)
        {
            if (_pendingReady.Count > 0)
            {
                IEnumerable<string> queues = _pendingReady.Count > MaxReadyQueuesPerSend || _pendingReady.Contains("") ? [""] : _pendingReady;
                foreach (var queue in queues)
                {
                    envelopes.Add(Envelope(NotifierChannels.Ready, queue));
                }
                _pendingReady.Clear();
            }
        }
        while (envelopes.Count < MaxPerSend && _outbox.TryDequeue(out var outgoing))
        {
            envelopes.Add(Envelope(outgoing.Channel, outgoing.Payload));
            done.Add(outgoing.Sent);
        }
        if (envelopes.Count == 0)
        {
            return false;
        }
        try
        {
            await using var connection = await _dataSource.OpenConnectionAsync().ConfigureAwait(false);
            // One implicit transaction: set_config(…, true) governs its commit. A function scan returns the array in
            // order, so the notifications are queued, and delivered, in the order they were asked for.
            await using var batch = new NpgsqlBatch(connection)
            {
                BatchCommands =
                {
                    new NpgsqlBatchCommand("SELECT set_config('synchronous_commit', 'off', true)"),
                    new NpgsqlBatchCommand("SELECT count(pg_notify(@channel, p)) FROM unnest(@payloads::text[]) AS p")
                    {
                        Parameters = { new NpgsqlParameter("channel", _channel), new NpgsqlParameter("payloads", envelopes.ToArray()) },
                    },
                },
            };
            await batch.ExecuteNonQueryAsync().ConfigureAwait(false);
            foreach (var sent in done)
            {
                sent.TrySetResult();
            }
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException or InvalidOperationException or ObjectDisposedException)
        {
            // Other processes' workers fall back to their poll; their listeners deliver Missed when they reconnect.
            LogNotifyFailed(_logger, _channel, ex);
            foreach (var sent in done)
            {
                sent.TrySetException(ex);
            }
        }
        return !_outbox.IsEmpty;
    }

    // Sender and sequence first: a payload may hold ':' and is taken whole after the channel. The sequence keeps two
    // equal notifications in one NOTIFY statement apart (PostgreSQL drops duplicates within a transaction).
    private string Envelope(string channel, string payload) =>
        string.Create(CultureInfo.InvariantCulture, $"{_self}:{Interlocked.Increment(ref _sequence):x}:{channel}:{payload}");

    private void FailPending(Exception exception)
    {
        while (_outbox.TryDequeue(out var outgoing))
        {
            outgoing.Sent.TrySetException(exception);
        }
    }

    /// <summary>Waits for the NOTIFY in flight, up to <see cref="DisposeWait"/>, and stops the listener; later publishes
    /// are refused.</summary>
    public async ValueTask DisposeAsync()
    {
        _disposed = true;
        try
        {
            await _running.WaitAsync(DisposeWait).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // A server that does not answer: the NOTIFY ends by Npgsql's own limits (connection and command timeouts, 45 s
            // by default), past a worker's documented stop. It is a hint: a process that misses it polls.
        }
        FailPending(new ObjectDisposedException(nameof(PostgresNotifier)));
        await _listener.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>Longest a dispose waits for the NOTIFY in flight.</summary>
    private static readonly TimeSpan DisposeWait = TimeSpan.FromSeconds(1);

    private readonly record struct Outgoing(string Channel, string Payload, TaskCompletionSource Sent);

    [LoggerMessage(EventId = 4003, Level = LogLevel.Debug, Message = "PostgreSQL NOTIFY on {Channel} failed; other processes' workers fall back to their poll")]
    private static partial void LogNotifyFailed(ILogger logger, string channel, Exception exception);
}
