using System.Collections.Concurrent;
using System.Text;
using Conveyor.Backends;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Conveyor.RabbitMQ;

/// <summary>
/// The queue role on a RabbitMQ broker, paired with a SQL store (any <see cref="IConveyorBackend"/>,
/// e.g. PostgreSQL or SQLite) that holds task state, results and coordination.
/// </summary>
/// <remarks>
/// The store is the authority for every task's state, so cancel, idempotency, lists, queue statistics,
/// lease fencing and lease expiry behave exactly as in the store's backend. The broker carries the
/// hand-off between processes: every message made ready (enqueue, release, manual retry) is published
/// persistently to a durable priority queue with publisher confirms (awaited before the call returns),
/// and consumers with a <c>basic.qos</c> prefetch push the deliveries into an in-process buffer, which wakes
/// waiting fetches without polling. A fetch leases rows in the store (the store picks priority, FIFO and
/// queue order) and acks the deliveries of the rows it leased; deliveries whose row is no longer ready
/// (cancelled, or leased by another process) are acked and dropped. Dead tasks are also published to a
/// dead-letter exchange. See docs/rabbitmq.md for the trade-offs.
/// </remarks>
public sealed partial class RabbitMqBackend : IConveyorBackend, IQueueBackend, IAsyncDisposable
{
    private readonly IConveyorBackend _store;
    private readonly RabbitMqBackendOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _connectLock = new(1, 1);
    private readonly ConcurrentDictionary<string, Lazy<Task>> _declared = new(StringComparer.Ordinal);
    // Every broker queue declared since the start (_declared forgets them at a reconnect), for DeleteBrokerObjectsAsync.
    private readonly ConcurrentDictionary<string, bool> _declaredNames = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _disposing = new();
    private readonly Lock _reconnectLock = new();
    private readonly ConcurrentDictionary<string, Lazy<Task>> _consumers = new(StringComparer.Ordinal);
    private readonly Lock _bufferLock = new();
    // Deliveries not matched to a lease yet, by task id.
    private readonly Dictionary<Guid, List<Delivery>> _buffer = [];
    // Deliveries of tasks leased here, unacked until the attempt settles.
    private readonly Dictionary<Guid, List<Delivery>> _held = [];
    // Tasks leased here before their delivery arrived (the store's fetch does not wait for it): the delivery is
    // held when it comes. Without this, nearly every delivery would arrive after its task was leased (or done),
    // wait in the buffer as stale until a sweep looked it up, and the broker queue would grow whenever tasks are
    // enqueued faster than the sweep drains (prefetch per PollInterval).
    private readonly HashSet<Guid> _leasedUndelivered = [];
    // Tasks settled here before their delivery arrived: the delivery is acked at once when it comes. Bounded: a
    // delivery may go to another process's consumer instead, so the oldest entries are forgotten (the sweep
    // still drops such a delivery, with one store lookup).
    private readonly HashSet<Guid> _settledUndelivered = [];
    private readonly Queue<Guid> _settledOrder = new();
    private const int SettledUndeliveredLimit = 16_384;
    private TaskCompletionSource _wake = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private IConnection? _connection;
    private IChannel? _publisher;
    private IChannel? _consumer;
    private bool _disposed;
    private long _lastSweep = long.MinValue;
    private bool _lastSweepDropped;
    // 1 while the broker connection is lost: the loss is logged once, not once per call that fails meanwhile.
    private int _down;
    // The reconnect loop while one runs (at most one); while it runs, calls that need the broker fail at once.
    private Task? _reconnecting;
    private string _lastConnectError = "";
    // Stopwatch timestamp of the first publish failure of the current streak; 0 when publishes succeed.
    private long _publishFailingSince;

    /// <summary>Creates the backend; it connects to the broker on first use.</summary>
    /// <param name="store">The SQL backend that holds state, results and coordination.</param>
    /// <param name="options">Broker settings.</param>
    /// <param name="time">The clock; the store should use the same one.</param>
    /// <param name="logger">Where the loss and the recovery of the broker connection are logged.</param>
    public RabbitMqBackend(IConveyorBackend store, RabbitMqBackendOptions options, TimeProvider? time = null, ILogger<RabbitMqBackend>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(options);
        _store = store;
        _options = options;
        _time = time ?? TimeProvider.System;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        var uri = new Uri(options.Url);
        var port = uri.Port > 0 ? uri.Port : uri.Scheme.Equals("amqps", StringComparison.OrdinalIgnoreCase) ? 5671 : 5672;
        EndpointText = uri.Host + ":" + port.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <inheritdoc />
    public string Name => "rabbitmq";

    /// <inheritdoc />
    public IQueueBackend Queue => this;

    /// <inheritdoc />
    public ITaskStore Store => _store.Store;

    /// <inheritdoc />
    public ICoordinationBackend Coordination => _store.Coordination;
    /// <inheritdoc />
    public INotifier Notifier => _inProcessNotifier;
    /// <inheritdoc />
    public BackendCapabilities Capabilities { get; } = new() { Reach = BackendReach.Network, CrossProcessNotifications = false };
    // Interim: notifications reach this process only, until the engine's own notifier replaces it.
    private readonly InProcessNotifier _inProcessNotifier = new();

    /// <summary>The paired SQL backend.</summary>
    public IConveyorBackend StoreBackend => _store;

    /// <summary>The name of the broker queue that carries a Conveyor queue: <c>{prefix}.q.{queue}</c>.</summary>
    public string BrokerQueueName(string queue) => BrokerQueue(queue);

    /// <summary>The name of the dead-letter exchange and of the queue bound to it: <c>{prefix}.dead</c>.</summary>
    public string DeadLetterName => DeadExchange;

    private string Exchange => _options.Prefix;

    private string DeadExchange => _options.Prefix + ".dead";

    private string BrokerQueue(string queue) => _options.Prefix + ".q." + queue;

    /// <inheritdoc />
    public async Task MigrateAsync(CancellationToken cancellationToken)
    {
        await _store.MigrateAsync(cancellationToken).ConfigureAwait(false);
        await ConnectAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<BackendHealth> CheckHealthAsync(CancellationToken cancellationToken)
    {
        var store = await _store.CheckHealthAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var (connection, _, _) = await ConnectAsync(cancellationToken).ConfigureAwait(false);
            if (!connection.IsOpen)
            {
                return new BackendHealth(false, "rabbitmq: the broker connection is closed; " + store.Description, store.Warnings);
            }
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return new BackendHealth(false, "rabbitmq: " + e.Message + "; " + store.Description, store.Warnings);
        }
        return store with { Description = "rabbitmq broker answered; store: " + store.Description };
    }

    /// <inheritdoc />
    /// <remarks>The broker: unreachable, its connection closed, or reconnecting (<see cref="BackendUnavailableException"/>);
    /// anything else is asked of the store.</remarks>
    public string? GetUnavailableBackend(Exception exception) => exception switch
    {
        BackendUnavailableException e => e.Backend,
        global::RabbitMQ.Client.Exceptions.BrokerUnreachableException or global::RabbitMQ.Client.Exceptions.AlreadyClosedException
            or global::RabbitMQ.Client.Exceptions.ConnectFailureException => Name,
        _ => _store.GetUnavailableBackend(exception),
    };

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

    // Reconnection: the client's automatic recovery (RabbitMQ.Client 7) retries at a fixed NetworkRecoveryInterval and
    // offers no hook for a growing delay, so it is off, and the backend reconnects itself: after a loss, one background
    // loop tries again after ReconnectBackoff (0.5 s doubling to 30 s by default, with jitter; reset by a success), and
    // calls that need the broker meanwhile fail at once with BackendUnavailableException instead of each trying to
    // connect. A new connection gets new channels, declares its queues again and consumes again (what the client's
    // topology recovery did); the store is the authority, so deliveries unacked on the old channels are simply
    // delivered again. See docs/rabbitmq.md.
    private async Task<(IConnection Connection, IChannel Publisher, IChannel Consumer)> ConnectAsync(CancellationToken cancellationToken, bool reconnecting = false)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_connection is { IsOpen: true } c && _publisher is { IsOpen: true } p && _consumer is { IsOpen: true } k)
        {
            return (c, p, k);
        }
        if (!reconnecting && Volatile.Read(ref _reconnecting) is { IsCompleted: false })
        {
            throw Unavailable(null);
        }
        await _connectLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_connection is not { IsOpen: true })
            {
                if (!reconnecting && _reconnecting is { IsCompleted: false })
                {
                    throw Unavailable(null);
                }
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
                var factory = new ConnectionFactory
                {
                    Uri = new Uri(_options.Url),
                    ClientProvidedName = "conveyor:" + _options.Prefix,
                    AutomaticRecoveryEnabled = false,
                };
                IConnection connection;
                try
                {
                    connection = await factory.CreateConnectionAsync(cancellationToken).ConfigureAwait(false);
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
                connection.ConnectionShutdownAsync += OnConnectionShutdownAsync;
                _quorum = UsesQuorumQueues(_options.QueueType, connection.ServerProperties);
                _connection = connection;
                // Queues are declared again on the new connection (the broker may have lost them).
                _declared.Clear();
                if (Interlocked.Exchange(ref _down, 0) == 1)
                {
                    LogConnectionRestored(_logger, EndpointText);
                }
            }
            if (_publisher is not { IsOpen: true })
            {
                // A channel error (say, a queue deleted under a binding) closes the channel: open a new one.
                _publisher?.Dispose();
                var publisher = await _connection.CreateChannelAsync(
                    new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true),
                    cancellationToken).ConfigureAwait(false);
                await publisher.ExchangeDeclareAsync(Exchange, ExchangeType.Direct, durable: true, autoDelete: false,
                    cancellationToken: cancellationToken).ConfigureAwait(false);
                await publisher.ExchangeDeclareAsync(DeadExchange, ExchangeType.Fanout, durable: true, autoDelete: false,
                    cancellationToken: cancellationToken).ConfigureAwait(false);
                await publisher.QueueDeclareAsync(DeadExchange, durable: true, exclusive: false, autoDelete: false,
                    arguments: null, cancellationToken: cancellationToken).ConfigureAwait(false);
                await publisher.QueueBindAsync(DeadExchange, DeadExchange, "", cancellationToken: cancellationToken).ConfigureAwait(false);
                _publisher = publisher;
            }
            if (_consumer is not { IsOpen: true })
            {
                // Deliveries of a closed channel go back to their queues: forget them and consume again.
                _consumer?.Dispose();
                var consumer = await _connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
                await consumer.BasicQosAsync(0, _options.Prefetch, false, cancellationToken).ConfigureAwait(false);
                lock (_bufferLock)
                {
                    // Unacked deliveries of the old channel go back to the queue and come again on the new one:
                    // those of tasks still leased here are held again when they come.
                    _buffer.Clear();
                    _leasedUndelivered.UnionWith(_held.Keys);
                    _held.Clear();
                }
                _consumers.Clear();
                _consumer = consumer;
            }
            return (_connection, _publisher, _consumer);
        }
        finally
        {
            _connectLock.Release();
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
                await ConnectAsync(_disposing.Token, reconnecting: true).ConfigureAwait(false);
                // Look in the store now rather than at the next poll.
                Wake();
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
                // The connection failed (ConnectAsync kept its reason). Logged once when the outage began (5001); the
                // next attempt waits longer.
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // Connected, but opening the channels failed: try again later too.
                _lastConnectError = e.Message;
            }
        }
    }

    private BackendUnavailableException Unavailable(Exception? inner) =>
        new(Name, $"RabbitMQ {EndpointText} is unreachable ({(inner?.Message ?? _lastConnectError)}); reconnecting with backoff", inner);

    // Host and port only: the URL may hold a password.
    private string EndpointText { get; }

    [LoggerMessage(EventId = 5001, Level = LogLevel.Warning, Message = "Lost the connection to RabbitMQ {Endpoint} ({Reason}); reconnecting in the background, calls that need the broker fail until then")]
    private static partial void LogConnectionLost(ILogger logger, string endpoint, string reason, Exception? exception);

    [LoggerMessage(EventId = 5003, Level = LogLevel.Warning, Message = "Could not publish to RabbitMQ after {Operation} ({Reason}); the tasks are stored, and fetches find them by polling the store until the broker is back")]
    private static partial void LogPublishFailed(ILogger logger, string operation, string reason, Exception exception);

    [LoggerMessage(EventId = 5002, Level = LogLevel.Information, Message = "Connection to RabbitMQ {Endpoint} restored")]
    private static partial void LogConnectionRestored(ILogger logger, string endpoint);

    /// <summary>Whether queues are declared as quorum queues: asked for, or <see cref="RabbitMqQueueType.Auto"/> on a
    /// broker that has them (RabbitMQ 3.8 and later, by the version it announces).</summary>
    internal static bool UsesQuorumQueues(RabbitMqQueueType type, IDictionary<string, object?>? serverProperties)
    {
        if (type != RabbitMqQueueType.Auto)
        {
            return type == RabbitMqQueueType.Quorum;
        }
        var version = serverProperties?.TryGetValue("version", out var value) == true
            ? value switch
            {
                byte[] bytes => System.Text.Encoding.UTF8.GetString(bytes),
                string text => text,
                _ => null,
            }
            : null;
        var parts = (version ?? "").Split('.');
        return parts.Length >= 2
            && int.TryParse(parts[0], System.Globalization.CultureInfo.InvariantCulture, out var major)
            && int.TryParse(parts[1], System.Globalization.CultureInfo.InvariantCulture, out var minor)
            && (major > 3 || (major == 3 && minor >= 8));
    }

    /// <summary>Whether the queues of this connection are quorum queues (<see cref="UsesQuorumQueues"/>).</summary>
    internal bool QuorumQueues => _quorum;

    private volatile bool _quorum;

    /// <summary>Declares the durable queue of a Conveyor queue (quorum, or classic with priorities), bound to the
    /// exchange by its name.</summary>
    private Task DeclareQueueAsync(string queue, CancellationToken cancellationToken)
    {
        var lazy = _declared.GetOrAdd(queue, q => new Lazy<Task>(async () =>
        {
            _declaredNames.TryAdd(q, true);
            var (connection, publisher, _) = await ConnectAsync(CancellationToken.None).ConfigureAwait(false);
            if (_quorum && _options.QueueType == RabbitMqQueueType.Auto)
            {
                // A queue declared before (classic, by an earlier version or by QueueType Classic) keeps its type: a
                // declaration with other arguments fails with PRECONDITION_FAILED and closes its channel, so the quorum
                // declaration is tried on a channel of its own, not on the shared publisher.
                await using var probe = await connection.CreateChannelAsync().ConfigureAwait(false);
                try
                {
                    await probe.QueueDeclareAsync(BrokerQueue(q), durable: true, exclusive: false, autoDelete: false, QueueArguments(quorum: true)).ConfigureAwait(false);
                }
                catch (global::RabbitMQ.Client.Exceptions.OperationInterruptedException e) when (e.ShutdownReason?.ReplyCode == 406)
                {
                    LogExistingClassicQueue(_logger, BrokerQueue(q));
                    await publisher.QueueDeclareAsync(BrokerQueue(q), durable: true, exclusive: false, autoDelete: false, QueueArguments(quorum: false)).ConfigureAwait(false);
                }
            }
            else
            {
                await publisher.QueueDeclareAsync(BrokerQueue(q), durable: true, exclusive: false, autoDelete: false, QueueArguments(_quorum)).ConfigureAwait(false);
            }
            await publisher.QueueBindAsync(BrokerQueue(q), Exchange, q).ConfigureAwait(false);
        }));
        return WithRetryOnFailure(_declared, queue, lazy).WaitAsync(cancellationToken);
    }

    private Dictionary<string, object?> QueueArguments(bool quorum)
    {
        var arguments = new Dictionary<string, object?> { ["x-dead-letter-exchange"] = DeadExchange };
        if (quorum)
        {
            arguments["x-queue-type"] = "quorum";
        }
        else
        {
            arguments["x-max-priority"] = 10;
        }
        return arguments;
    }

    [LoggerMessage(EventId = 5010, Level = LogLevel.Information, Message = "RabbitMQ queue {Queue} exists as a classic queue and stays one (QueueType Auto would declare new queues as quorum queues)")]
    private static partial void LogExistingClassicQueue(ILogger logger, string queue);

    private static async Task WithRetryOnFailure(ConcurrentDictionary<string, Lazy<Task>> cache, string key, Lazy<Task> lazy)
    {
        try
        {
            await lazy.Value.ConfigureAwait(false);
        }
        catch
        {
            cache.TryRemove(new KeyValuePair<string, Lazy<Task>>(key, lazy));
            throw;
        }
    }

    private Task EnsureConsumerAsync(string queue, CancellationToken cancellationToken)
    {
        var lazy = _consumers.GetOrAdd(queue, q => new Lazy<Task>(async () =>
        {
            await DeclareQueueAsync(q, CancellationToken.None).ConfigureAwait(false);
            var (_, _, channel) = await ConnectAsync(CancellationToken.None).ConfigureAwait(false);
            var consumer = new AsyncEventingBasicConsumer(channel);
            consumer.ReceivedAsync += OnDeliveryAsync;
            await channel.BasicConsumeAsync(BrokerQueue(q), autoAck: false, consumer).ConfigureAwait(false);
        }));
        return WithRetryOnFailure(_consumers, queue, lazy).WaitAsync(cancellationToken);
    }

    /// <summary>A delivery, acked on the channel it came from (its tag means nothing on another).</summary>
    private readonly record struct Delivery(IChannel Channel, ulong Tag);

    private async Task OnDeliveryAsync(object sender, BasicDeliverEventArgs e)
    {
        var delivery = new Delivery(((AsyncEventingBasicConsumer)sender).Channel, e.DeliveryTag);
        var text = Encoding.UTF8.GetString(e.Body.Span);
        if (!Guid.TryParse(text, out var id))
        {
            // A wake-up without a task (promotion, requeued leases): nothing to hold.
            await AckAsync([delivery]).ConfigureAwait(false);
            Wake();
            return;
        }
        var settled = false;
        lock (_bufferLock)
        {
            if (_held.TryGetValue(id, out var held))
            {
                // Another delivery of a task running here (a redelivery): settled with it.
                held.Add(delivery);
                return;
            }
            if (_leasedUndelivered.Remove(id))
            {
                _held[id] = [delivery];
                return;
            }
            if (_settledUndelivered.Remove(id))
            {
                settled = true;
            }
            else
            {
                if (!_buffer.TryGetValue(id, out var buffered))
                {
                    _buffer[id] = buffered = [];
                }
                buffered.Add(delivery);
            }
        }
        if (settled)
        {
            // Its task already ran here: nothing to wake.
            await AckAsync([delivery]).ConfigureAwait(false);
            return;
        }
        Wake();
    }

    private void Wake()
    {
        Interlocked.Exchange(ref _wake, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
        _inProcessNotifier.Hub.Deliver(new Notification(NotifierChannels.Ready, ""));
    }

    private enum Settle
    {
        Ack,
        Requeue,
        DeadLetter,
    }

    private static Task AckAsync(List<Delivery> deliveries) => SettleAsync(deliveries, Settle.Ack);

    private static async Task SettleAsync(List<Delivery> deliveries, Settle how)
    {
        foreach (var (channel, tag) in deliveries)
        {
            if (!channel.IsOpen)
            {
                // The channel closed (or is recovering): the broker redelivers its unacked messages.
                continue;
            }
            try
            {
                switch (how)
                {
                    case Settle.Ack:
                        await channel.BasicAckAsync(tag, multiple: false).ConfigureAwait(false);
                        break;
                    case Settle.Requeue:
                        await channel.BasicNackAsync(tag, multiple: false, requeue: true).ConfigureAwait(false);
                        break;
                    default:
                        // The queue's x-dead-letter-exchange takes it.
                        await channel.BasicRejectAsync(tag, requeue: false).ConfigureAwait(false);
                        break;
                }
            }
            catch (Exception e) when (e is global::RabbitMQ.Client.Exceptions.AlreadyClosedException or ObjectDisposedException)
            {
                // The channel closed meanwhile: the broker redelivers; the store decides whether the row is still ready.
            }
        }
    }

    private List<Delivery> TakeDeliveries(IEnumerable<Guid> ids)
    {
        var deliveries = new List<Delivery>();
        lock (_bufferLock)
        {
            foreach (var id in ids)
            {
                if (_buffer.Remove(id, out var buffered))
                {
                    deliveries.AddRange(buffered);
                }
            }
        }
        return deliveries;
    }

    /// <summary>Takes the held deliveries of tasks whose attempt settled here (<paramref name="found"/>: the tasks that
    /// had one); a task whose delivery has not arrived yet has it acked at once when it comes.</summary>
    private List<Delivery> TakeHeld(IEnumerable<Guid> ids, out HashSet<Guid> found)
    {
        var deliveries = new List<Delivery>();
        found = [];
        lock (_bufferLock)
        {
            foreach (var id in ids)
            {
                if (_held.Remove(id, out var held))
                {
                    deliveries.AddRange(held);
                    found.Add(id);
                }
                else if (_leasedUndelivered.Remove(id) && _settledUndelivered.Add(id))
                {
                    _settledOrder.Enqueue(id);
                    while (_settledOrder.Count > SettledUndeliveredLimit)
                    {
                        _settledUndelivered.Remove(_settledOrder.Dequeue());
                    }
                }
            }
        }
        return deliveries;
    }

    /// <summary>Moves the buffered deliveries of leased tasks to the held set: they stay unacked until the attempt settles.</summary>
    private void Hold(IReadOnlyList<Lease> leases)
    {
        lock (_bufferLock)
        {
            foreach (var lease in leases)
            {
                var id = lease.Message.Id;
                if (_buffer.Remove(id, out var deliveries))
                {
                    if (_held.TryGetValue(id, out var held))
                    {
                        held.AddRange(deliveries);
                    }
                    else
                    {
                        _held[id] = deliveries;
                    }
                }
                else if (!_held.ContainsKey(id))
                {
                    // Leased before its delivery arrived: held when it comes.
                    _leasedUndelivered.Add(id);
                }
            }
        }
    }

    private async Task PublishAsync(IEnumerable<(string Queue, Guid Id, int Priority)> messages, CancellationToken cancellationToken)
    {
        var (_, publisher, _) = await ConnectAsync(cancellationToken).ConfigureAwait(false);
        var pending = new List<Task>();
        foreach (var (queue, id, priority) in messages)
        {
            await DeclareQueueAsync(queue, cancellationToken).ConfigureAwait(false);
            pending.Add(Publish(publisher, Exchange, queue, id == Guid.Empty ? "" : id.ToString("D"), priority, cancellationToken));
        }
        // Publisher confirms: each publish completes when the broker has taken the message (persisted to disk for a durable queue).
        await Task.WhenAll(pending).ConfigureAwait(false);
    }

    private static Task Publish(IChannel channel, string exchange, string routingKey, string body, int priority, CancellationToken cancellationToken)
    {
        var properties = new BasicProperties
        {
            Persistent = true,
            Priority = (byte)Math.Clamp((priority - Priorities.Min) * 10 / (Priorities.Max - Priorities.Min + 1), 0, 9),
            MessageId = body.Length == 0 ? null : body,
        };
        return channel.BasicPublishAsync(exchange, routingKey, mandatory: false, properties, Encoding.UTF8.GetBytes(body), cancellationToken).AsTask();
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<EnqueueResult>> EnqueueAsync(IReadOnlyList<TaskMessage> messages, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var results = await _store.Queue.EnqueueAsync(messages, cancellationToken).ConfigureAwait(false);
        var ready = new List<(string, Guid, int)>();
        for (var i = 0; i < results.Count; i++)
        {
            if (results[i] is { Created: true, State: TaskState.Queued })
            {
                ready.Add((messages[i].Queue, messages[i].Id, messages[i].Priority));
            }
        }
        if (ready.Count > 0)
        {
            await AfterStoreAsync(() => PublishAsync(ready, cancellationToken), "enqueue", cancellationToken).ConfigureAwait(false);
        }
        return results;
    }

    /// <summary>
    /// Runs a broker step that follows a store change already made (publishing ready tasks, a wake-up, a dead-letter
    /// copy). The store is the authority and its row the outbox, so a broker failure here does not fail the call: a
    /// ready row without a message is found by the fetches' store poll (PollInterval), as after a crash between the
    /// two steps. Failing the call instead would report an enqueue as refused although its tasks are stored and will
    /// run. Logged once per failing streak.
    /// </summary>
    private async Task AfterStoreAsync(Func<Task> step, string operation, CancellationToken cancellationToken)
    {
        // Logged once per streak of failures. Only a publish that began after the streak began ends it: one in flight
        // when the broker went away may still succeed after others failed, and must not make the next failure log again.
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            await step().ConfigureAwait(false);
            var failingSince = Interlocked.Read(ref _publishFailingSince);
            if (failingSince != 0 && started > failingSince)
            {
                Interlocked.CompareExchange(ref _publishFailingSince, 0, failingSince);
            }
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            if (Interlocked.CompareExchange(ref _publishFailingSince, System.Diagnostics.Stopwatch.GetTimestamp(), 0) == 0)
            {
                LogPublishFailed(_logger, operation, e.Message, e);
            }
        }
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<Lease>> FetchAsync(FetchRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        foreach (var queue in request.Queues)
        {
            await EnsureConsumerAsync(queue.Name, cancellationToken).ConfigureAwait(false);
        }
        var deadline = _time.GetUtcNow() + request.MaxWait;
        var now = request with { MaxWait = TimeSpan.Zero };
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var wake = Volatile.Read(ref _wake).Task;
            var leases = await _store.Queue.FetchAsync(now, cancellationToken).ConfigureAwait(false);
            Hold(leases);
            if (leases.Count < request.MaxCount)
            {
                await DropStaleDeliveriesAsync(cancellationToken).ConfigureAwait(false);
            }
            if (leases.Count > 0)
            {
                return leases;
            }
            var remaining = deadline - _time.GetUtcNow();
            if (remaining <= TimeSpan.Zero)
            {
                return [];
            }
            var wait = remaining < _options.PollInterval ? remaining : _options.PollInterval;
            try
            {
                await wake.WaitAsync(wait, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                // Look in the store again: work may have become ready without a message.
            }
        }
    }

    /// <summary>Acks the buffered deliveries whose row is no longer ready (leased elsewhere, cancelled, finished).</summary>
    private async Task DropStaleDeliveriesAsync(CancellationToken cancellationToken)
    {
        // At most once per PollInterval (wall clock): a paused queue's deliveries wait in the buffer and
        // need not be looked up on every fetch. Right away again when the last sweep dropped some: stale
        // deliveries are coming in (tasks leased by another process), and a buffer full of them stops the consumer.
        var now = Environment.TickCount64;
        var last = Interlocked.Read(ref _lastSweep);
        if (last != long.MinValue && now - last < (long)_options.PollInterval.TotalMilliseconds && !Volatile.Read(ref _lastSweepDropped))
        {
            return;
        }
        Interlocked.Exchange(ref _lastSweep, now);
        Guid[] ids;
        lock (_bufferLock)
        {
            ids = [.. _buffer.Keys];
        }
        if (ids.Length == 0)
        {
            Volatile.Write(ref _lastSweepDropped, false);
            return;
        }
        // One store lookup for the whole buffer: after a restart the queue can hold thousands of messages for tasks
        // another process already ran, and only this sweep drains them.
        var states = await _store.Store.GetStatesAsync(ids, cancellationToken).ConfigureAwait(false);
        var stale = ids.Where(id => !states.TryGetValue(id, out var state) || state != TaskState.Queued).ToList();
        Volatile.Write(ref _lastSweepDropped, stale.Count > 0);
        await AckAsync(TakeDeliveries(stale)).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task CompleteAsync(IReadOnlyList<Completion> completions, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(completions);
        await _store.Queue.CompleteAsync(completions, cancellationToken).ConfigureAwait(false);
        // The store has the outcomes: settle the deliveries. A dead task's delivery is rejected to the
        // dead-letter exchange; the others are acked (a retry waits in the store and is published when due).
        var askedDead = completions.Where(c => c.Kind == CompletionKind.Dead).Select(c => c.Lease.TaskId).ToList();
        var states = askedDead.Count == 0
            ? null
            : await _store.Store.GetStatesAsync(askedDead, cancellationToken).ConfigureAwait(false);
        var dead = askedDead.Where(id => states!.TryGetValue(id, out var state) && state == TaskState.Dead).ToList();
        var deadSet = dead.ToHashSet();
        await AckAsync(TakeHeld(completions.Select(c => c.Lease.TaskId).Where(id => !deadSet.Contains(id)), out _)).ConfigureAwait(false);
        if (dead.Count == 0)
        {
            return;
        }
        await SettleAsync(TakeHeld(dead, out var rejected), Settle.DeadLetter).ConfigureAwait(false);
        var unheld = dead.Where(id => !rejected.Contains(id)).ToList();
        if (unheld.Count == 0)
        {
            return;
        }
        // No delivery held here (it was consumed by another process, or its channel closed): publish the record.
        // Without a broker the dead-letter queue misses it; the store has the task dead.
        await AfterStoreAsync(async () =>
        {
            var (_, publisher, _) = await ConnectAsync(cancellationToken).ConfigureAwait(false);
            var pending = new List<Task>();
            foreach (var id in unheld)
            {
                pending.Add(Publish(publisher, DeadExchange, "", id.ToString("D"), 0, cancellationToken));
            }
            await Task.WhenAll(pending).ConfigureAwait(false);
        }, "a dead-letter copy", cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<LeaseExtension> ExtendLeasesAsync(IReadOnlyList<LeaseRef> leases, TimeSpan duration, CancellationToken cancellationToken)
    {
        var extension = await _store.Queue.ExtendLeasesAsync(leases, duration, cancellationToken).ConfigureAwait(false);
        if (extension.Lost.Count > 0)
        {
            // The store gave these leases up: their deliveries have nothing left to guard.
            await AckAsync(TakeHeld(extension.Lost.Select(l => l.TaskId), out _)).ConfigureAwait(false);
        }
        return extension;
    }

    /// <inheritdoc />
    public async Task ReleaseAsync(IReadOnlyList<LeaseRef> leases, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(leases);
        await _store.Queue.ReleaseAsync(leases, cancellationToken).ConfigureAwait(false);
        // Held deliveries go back to their queue (basic.nack with requeue); the others are published again.
        await SettleAsync(TakeHeld(leases.Select(l => l.TaskId), out var requeued), Settle.Requeue).ConfigureAwait(false);
        await PublishReadyAsync(leases.Select(l => l.TaskId).Where(id => !requeued.Contains(id)), cancellationToken).ConfigureAwait(false);
    }

    private async Task PublishReadyAsync(IEnumerable<Guid> ids, CancellationToken cancellationToken)
    {
        var ready = new List<(string, Guid, int)>();
        foreach (var id in ids)
        {
            var record = await _store.Store.GetAsync(id, cancellationToken).ConfigureAwait(false);
            if (record is { State: TaskState.Queued })
            {
                ready.Add((record.Queue, record.Id, record.Priority));
            }
        }
        if (ready.Count > 0)
        {
            await AfterStoreAsync(() => PublishAsync(ready, cancellationToken), "release or retry", cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public async Task<int> RequeueExpiredLeasesAsync(CancellationToken cancellationToken)
    {
        var count = await _store.Queue.RequeueExpiredLeasesAsync(cancellationToken).ConfigureAwait(false);
        if (count > 0)
        {
            await WakeQueuesAsync(cancellationToken).ConfigureAwait(false);
        }
        return count;
    }

    /// <inheritdoc />
    public async Task<int> PromoteDueAsync(CancellationToken cancellationToken)
    {
        var count = await _store.Queue.PromoteDueAsync(cancellationToken).ConfigureAwait(false);
        if (count > 0)
        {
            await WakeQueuesAsync(cancellationToken).ConfigureAwait(false);
        }
        return count;
    }

    /// <summary>Publishes a wake-up (a message without a task) to every queue with ready work.</summary>
    private async Task WakeQueuesAsync(CancellationToken cancellationToken)
    {
        var queues = await _store.Store.GetQueuesAsync(cancellationToken).ConfigureAwait(false);
        await AfterStoreAsync(() => PublishAsync(queues.Where(q => q.Count(TaskState.Queued) > 0).Select(q => (q.Name, Guid.Empty, 0)), cancellationToken),
            "a wake-up", cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public Task<DateTimeOffset?> NextDueAsync(CancellationToken cancellationToken) => _store.Queue.NextDueAsync(cancellationToken);

    /// <inheritdoc />
    public Task<CancelOutcome> CancelAsync(Guid taskId, CancellationToken cancellationToken) => _store.Queue.CancelAsync(taskId, cancellationToken);

    /// <inheritdoc />
    public async Task<RetryOutcome> RetryAsync(Guid taskId, CancellationToken cancellationToken)
    {
        var outcome = await _store.Queue.RetryAsync(taskId, cancellationToken).ConfigureAwait(false);
        if (outcome == RetryOutcome.Requeued)
        {
            await PublishReadyAsync([taskId], cancellationToken).ConfigureAwait(false);
        }
        return outcome;
    }

    /// <inheritdoc />
    public Task PauseQueueAsync(string queue, CancellationToken cancellationToken) => _store.Queue.PauseQueueAsync(queue, cancellationToken);

    /// <inheritdoc />
    public Task ResumeQueueAsync(string queue, CancellationToken cancellationToken) => _store.Queue.ResumeQueueAsync(queue, cancellationToken);

    /// <summary>Deletes the exchanges and queues of this backend's prefix that it declared (for tests and teardown).</summary>
    public async Task DeleteBrokerObjectsAsync(CancellationToken cancellationToken)
    {
        // Let declarations and consumers under way finish first, so that none re-creates what is deleted.
        foreach (var pending in _declared.Values.Concat(_consumers.Values).ToList())
        {
            try
            {
                await pending.Value.ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                // A failed declaration left nothing to delete.
            }
        }
        var (_, publisher, _) = await ConnectAsync(cancellationToken).ConfigureAwait(false);
        foreach (var queue in _declaredNames.Keys)
        {
            await publisher.QueueDeleteAsync(BrokerQueue(queue), ifUnused: false, ifEmpty: false, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        await publisher.QueueDeleteAsync(DeadExchange, ifUnused: false, ifEmpty: false, cancellationToken: cancellationToken).ConfigureAwait(false);
        await publisher.ExchangeDeleteAsync(DeadExchange, ifUnused: false, cancellationToken: cancellationToken).ConfigureAwait(false);
        await publisher.ExchangeDeleteAsync(Exchange, ifUnused: false, cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
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
                await connection.CloseAsync().ConfigureAwait(false);
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
        if (_options.OwnsStore)
        {
            switch (_store)
            {
                case IAsyncDisposable asyncDisposable:
                    await asyncDisposable.DisposeAsync().ConfigureAwait(false);
                    break;
                case IDisposable disposable:
                    disposable.Dispose();
                    break;
            }
        }
    }
}
