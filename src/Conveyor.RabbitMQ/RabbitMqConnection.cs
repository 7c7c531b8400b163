using Conveyor.Backends;
using Microsoft.Extensions.Logging;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Conveyor.RabbitMQ;

/// <summary>The channels of one broker connection: a publisher with confirms and a consumer with the prefetch.</summary>
internal readonly record struct RabbitMqChannels(IConnection Connection, IChannel Publisher, IChannel Consumer);

/// <summary>
/// The broker connection of one backend instance, its two channels, and the reconnect loop with its backoff.
/// </summary>
/// <remarks>
/// The client's automatic recovery (RabbitMQ.Client 7) retries at a fixed NetworkRecoveryInterval and offers no hook for
/// a growing delay, so it is off, and this class reconnects itself: after a loss, one background loop tries again after
/// <see cref="ReconnectBackoff"/> (0.5 s doubling to 30 s by default, with jitter; reset by a success), and calls that
/// need the broker meanwhile fail at once with <see cref="BackendUnavailableException"/> instead of each trying to
/// connect. A new connection gets new channels; the hooks declare the topology again, reset the delivery ledger and
/// consume again (what the client's topology recovery did). See docs/rabbitmq.md.
/// </remarks>
internal sealed partial class RabbitMqConnection : IAsyncDisposable
{
    private readonly RabbitMqBackendOptions _options;
    private readonly ILogger _logger;
    private readonly ConnectionFactory _factory;
    private readonly SemaphoreSlim _connectLock = new(1, 1);
    private readonly CancellationTokenSource _disposing = new();
    private readonly Lock _reconnectLock = new();
    private IConnection? _connection;
    private IChannel? _publisher;
    private IChannel? _consumer;
    private bool _disposed;
    // 1 while the broker connection is lost: the loss is logged once, not once per call that fails meanwhile.
    private int _down;
    // Whether a connection was ever open: a later one replaces it (ConnectionReplaced).
    private bool _wasOpen;
    // The reconnect loop while one runs (at most one); while it runs, calls that need the broker fail at once.
    private Task? _reconnecting;
    private string _lastConnectError = "";

    public RabbitMqConnection(RabbitMqBackendOptions options, ILogger logger)
    {
        _options = options;
        _logger = logger;
        // Made once: a URL that cannot work (say, a CA file that cannot be read) fails here, not at each reconnect.
        _factory = RabbitMqUrl.CreateFactory(options.Url);
        _factory.ClientProvidedName = "conveyor:" + options.Prefix;
        _factory.AutomaticRecoveryEnabled = false;
        var uri = new Uri(options.Url);
        var port = uri.Port > 0 ? uri.Port : uri.Scheme.Equals("amqps", StringComparison.OrdinalIgnoreCase) ? 5671 : 5672;
        EndpointText = uri.Host + ":" + port.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Host and port only: the URL may hold a password.</summary>
    public string EndpointText { get; }

    /// <summary>The consumer channel as it is, open or closed; never opens one (tests check that the channel the
    /// deliveries came on is still open, where <see cref="GetAsync"/> would replace a closed one).</summary>
    internal IChannel? CurrentConsumer => Volatile.Read(ref _consumer);

    /// <summary>Called under the connect lock when a new connection opened, before its channels.</summary>
    public required Action<IConnection> ConnectionOpened { get; init; }

    /// <summary>Called under the connect lock when a new publisher channel opened: declares the exchanges.</summary>
    public required Func<IChannel, CancellationToken, Task> PublisherOpened { get; init; }

    /// <summary>Called under the connect lock when a new consumer channel opened: the old one's deliveries come again.</summary>
    public required Action ConsumerOpened { get; init; }

    /// <summary>Called, outside the lock and not awaited by the caller that connected, when a new connection replaced a
    /// lost one or came after failed attempts: what was subscribed is subscribed on it, and what was missed meanwhile
    /// is said.</summary>
    public required Func<Task> ConnectionReplaced { get; init; }

    /// <summary>
    /// The wait before reconnect attempt <paramref name="attempt"/> (0 for the first after a loss): <c>ReconnectDelay</c>
    /// doubling per attempt up to <c>MaxReconnectDelay</c>, then scaled by a jitter factor between 0.5 and 1 taken from
    /// <paramref name="random"/> (in [0, 1)), so that the processes of a deployment do not all reconnect at the same instant.
    /// </summary>
    internal static TimeSpan ReconnectBackoff(int attempt, TimeSpan initial, TimeSpan max, double random)
    {
        var capped = Math.Min(max.TotalMilliseconds, initial.TotalMilliseconds * Math.Pow(2, Math.Clamp(attempt, 0, 30)));
        return TimeSpan.FromMilliseconds(capped * (0.5 + (Math.Clamp(random, 0, 1) / 2)));
    }

    /// <summary>The open connection and its channels, connecting (or opening channels again) when needed; throws
    /// <see cref="BackendUnavailableException"/> at once while the reconnect loop runs.</summary>
    public async Task<RabbitMqChannels> GetAsync(CancellationToken cancellationToken, bool reconnecting = false)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_connection is { IsOpen: true } c && _publisher is { IsOpen: true } p && _consumer is { IsOpen: true } k)
        {
            return new RabbitMqChannels(c, p, k);
        }
        if (!reconnecting && Volatile.Read(ref _reconnecting) is { IsCompleted: false })
        {
            throw Unavailable(null);
        }
        var replaced = false;
        await _connectLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_connection is not { IsOpen: true })
            {
                if (!reconnecting && _reconnecting is { IsCompleted: false })
                {
                    throw Unavailable(null);
                }
                DropConnection();
                var connection = await OpenConnectionAsync(reconnecting, cancellationToken).ConfigureAwait(false);
                connection.ConnectionShutdownAsync += OnConnectionShutdownAsync;
                _connection = connection;
                ConnectionOpened(connection);
                var wasDown = Interlocked.Exchange(ref _down, 0) == 1;
                if (wasDown)
                {
                    LogConnectionRestored(_logger, EndpointText);
                }
                // Every connection but a first that came at once: subscriptions made meanwhile wait for it.
                replaced = _wasOpen || wasDown;
                _wasOpen = true;
            }
            if (_publisher is not { IsOpen: true })
            {
                // A channel error (say, a queue deleted under a binding) closes the channel: open a new one.
                _publisher?.Dispose();
                var publisher = await _connection.CreateChannelAsync(
                    new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true),
                    cancellationToken).ConfigureAwait(false);
                await PublisherOpened(publisher, cancellationToken).ConfigureAwait(false);
                _publisher = publisher;
            }
            if (_consumer is not { IsOpen: true })
            {
                // Deliveries of a closed channel go back to their queues: forget them and consume again.
                _consumer?.Dispose();
                // Deliveries handed to the consumers one at a time, in tag order: UnsettledTags relies on every delivery
                // being recorded before a later one is (a multiple ack must not cover one not yet recorded).
                var consumer = await _connection.CreateChannelAsync(
                    new CreateChannelOptions(publisherConfirmationsEnabled: false, publisherConfirmationTrackingEnabled: false, consumerDispatchConcurrency: 1),
                    cancellationToken).ConfigureAwait(false);
                await consumer.BasicQosAsync(0, _options.Prefetch, false, cancellationToken).ConfigureAwait(false);
                ConsumerOpened();
                _consumer = consumer;
            }
            return new RabbitMqChannels(_connection, _publisher, _consumer);
        }
        finally
        {
            _connectLock.Release();
            if (replaced)
            {
                // Not under the lock: the hook opens channels of its own on the new connection.
                _ = Task.Run(ConnectionReplaced);
            }
        }
    }

    private void DropConnection()
    {
        if (_connection is { } old)
        {
            _connection = null;
            old.ConnectionShutdownAsync -= OnConnectionShutdownAsync;
            try
            {
                old.Dispose();
            }
            catch (Exception e) when (e is global::RabbitMQ.Client.Exceptions.AlreadyClosedException or IOException)
            {
                // The broker dropped it already.
            }
        }
    }

    private async Task<IConnection> OpenConnectionAsync(bool reconnecting, CancellationToken cancellationToken)
    {
        try
        {
            return await _factory.CreateConnectionAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            _lastConnectError = e.Message;
            if (Interlocked.Exchange(ref _down, 1) == 0)
            {
                LogConnectionLost(_logger, EndpointText, e.Message, e);
            }
            if (!reconnecting)
            {
                StartReconnecting();
            }
            throw Unavailable(e);
        }
    }

    private Task OnConnectionShutdownAsync(object sender, ShutdownEventArgs e)
    {
        // Our own close (dispose) is no outage. Meanwhile calls that need the broker fail and the fetches use the store.
        if (e.Initiator != ShutdownInitiator.Application && !_disposed)
        {
            _lastConnectError = e.ReplyText;
            if (Interlocked.Exchange(ref _down, 1) == 0)
            {
                LogConnectionLost(_logger, EndpointText, e.ReplyText, e.Exception);
            }
            StartReconnecting();
        }
        return Task.CompletedTask;
    }

    /// <summary>Starts the reconnect loop unless one runs.</summary>
    private void StartReconnecting()
    {
        lock (_reconnectLock)
        {
            if (_disposed || _reconnecting is { IsCompleted: false })
            {
                return;
            }
            Volatile.Write(ref _reconnecting, Task.Run(ReconnectAsync));
        }
    }

    private async Task ReconnectAsync()
    {
        for (var attempt = 0; !_disposing.IsCancellationRequested; attempt++)
        {
            var delay = ReconnectBackoff(attempt, _options.ReconnectDelay, _options.MaxReconnectDelay, Random.Shared.NextDouble());
            try
            {
                // Wall-clock time, whatever clock the backend was given: the network does not run on a test's fake clock.
                await Task.Delay(delay, _disposing.Token).ConfigureAwait(false);
                await GetAsync(_disposing.Token, reconnecting: true).ConfigureAwait(false);
                return;
            }
            catch (OperationCanceledException) when (_disposing.IsCancellationRequested)
            {
                return;
            }
            catch (ObjectDisposedException) when (_disposed)
            {
                return;
            }
            catch (BackendUnavailableException)
            {
                // The connection failed (OpenConnectionAsync kept its reason). Logged once when the outage began
                // (5001); the next attempt waits longer.
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // Connected, but opening the channels failed: try again later too.
                _lastConnectError = e.Message;
            }
        }
    }

    /// <summary>The error of a call that needs the broker while it cannot be reached.</summary>
    public BackendUnavailableException Unavailable(Exception? inner) =>
        new("rabbitmq", $"RabbitMQ {EndpointText} is unreachable ({(inner?.Message ?? _lastConnectError)}); reconnecting with backoff", inner);

    /// <summary>Longest a dispose waits for the broker to answer a close, of the connection or of a channel.</summary>
    internal static readonly TimeSpan CloseWait = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Waits up to <see cref="CloseWait"/> for <paramref name="close"/>; true when it ended in that time. Against a broker
    /// that no longer answers (a partition, a frozen host) the client waits for the close's answer up to its own time
    /// limits, which it does not let a caller shorten (a connection's close at least 30 s, an abort 5 s, a channel's
    /// close its continuation timeout, 20 s), and a dispose of the same object waits again: that held a worker's exit
    /// for 50 s past its stop. Past the wait the close goes on alone, and <paramref name="closing"/> is disposed when it
    /// ends; the process may exit first, which closes the socket.
    /// </summary>
    internal static async Task<bool> CloseWithinAsync(Task close, IDisposable closing)
    {
        try
        {
            await close.WaitAsync(CloseWait).ConfigureAwait(false);
            return true;
        }
        catch (TimeoutException)
        {
            _ = close.ContinueWith(static (t, c) =>
            {
                _ = t.Exception;
                try
                {
                    ((IDisposable)c!).Dispose();
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    // Closed or not, the object is let go; the process may be exiting.
                }
            }, closing, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
            return false;
        }
    }

    /// <summary>Stops the reconnect loop and closes the connection.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }
        Task? reconnecting;
        lock (_reconnectLock)
        {
            _disposed = true;
            reconnecting = _reconnecting;
        }
        await _disposing.CancelAsync().ConfigureAwait(false);
        if (reconnecting is not null)
        {
            // Ends at once: it stops at the cancellation.
            await reconnecting.ConfigureAwait(false);
        }
        try
        {
            if (_connection is { } connection)
            {
                if (!await CloseWithinAsync(connection.CloseAsync(), connection).ConfigureAwait(false))
                {
                    // Its channels close with it; disposed now, each would wait for the broker's answer again.
                    _connectLock.Dispose();
                    _disposing.Dispose();
                    return;
                }
                connection.Dispose();
            }
        }
        catch (Exception e) when (e is global::RabbitMQ.Client.Exceptions.AlreadyClosedException or IOException)
        {
            // Closing a connection the broker already dropped.
        }
        _publisher?.Dispose();
        _consumer?.Dispose();
        _connectLock.Dispose();
        _disposing.Dispose();
    }

    [LoggerMessage(EventId = 5001, Level = LogLevel.Warning, Message = "Lost the connection to RabbitMQ {Endpoint} ({Reason}); reconnecting in the background, calls that need the broker fail until then")]
    private static partial void LogConnectionLost(ILogger logger, string endpoint, string reason, Exception? exception);

    [LoggerMessage(EventId = 5002, Level = LogLevel.Information, Message = "Connection to RabbitMQ {Endpoint} restored")]
    private static partial void LogConnectionRestored(ILogger logger, string endpoint);
}
