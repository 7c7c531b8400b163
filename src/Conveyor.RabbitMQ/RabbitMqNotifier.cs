using System.Text;
using Conveyor.Backends;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Conveyor.RabbitMQ;

/// <summary>
/// The RabbitMQ backend's notifier: a fanout exchange <c>{prefix}.notify</c>, and per backend instance an exclusive,
/// auto-delete, non-durable queue bound to it, consumed with automatic acks on a channel of the notifier's own. A
/// message's <c>type</c> property is the channel and its <c>app_id</c> the sending instance, so that this instance
/// ignores its own publishes when they come back (its subscribers had them at publish time, through the
/// <see cref="Hub"/>). Ready notifications do not travel here: a delivery of a queue's message is that signal, in the
/// process that consumed it (<see cref="RabbitMqDeliveries"/>). See docs/rabbitmq.md.
/// </summary>
internal sealed class RabbitMqNotifier : INotifier, IAsyncDisposable
{
    /// <summary>The largest payload, in UTF-8 bytes: 8,000 as on PostgreSQL (a broker takes far more), so that code
    /// written against one backend runs on the others.</summary>
    public const int MaxPayload = 8000;

    private readonly RabbitMqConnection _connection;
    private readonly RabbitMqTopology _topology;
    private readonly string _sender = Guid.NewGuid().ToString("N");
    private readonly SemaphoreSlim _lock = new(1, 1);
    private IChannel? _channel;
    // Whether this instance's queue is bound and consumed on _channel; wanted from the first subscription on.
    private volatile bool _listening;
    private volatile bool _wantListening;
    private volatile bool _disposed;

    public RabbitMqNotifier(RabbitMqConnection connection, RabbitMqTopology topology)
    {
        _connection = connection;
        _topology = topology;
    }

    /// <summary>This instance's subscriptions.</summary>
    public NotificationHub Hub { get; } = new();

    /// <summary>Publishes to this instance's subscribers at once and to the other instances through the exchange.</summary>
    public async ValueTask PublishAsync(string channel, string payload, CancellationToken cancellationToken)
    {
        NotifierPayload.Check(channel, payload, MaxPayload);
        Hub.Deliver(new Notification(channel, payload));
        var amqp = await GetChannelAsync(cancellationToken).ConfigureAwait(false);
        var properties = new BasicProperties { Type = channel, AppId = _sender };
        await amqp.BasicPublishAsync(_topology.NotifyExchange, "", mandatory: false, properties, Encoding.UTF8.GetBytes(payload), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Subscribes in this process; the first subscription binds this instance's queue. While the broker is
    /// unreachable the subscription is kept and hears this process (ready signals included) and, once the connection
    /// is back, the others too.</summary>
    public async ValueTask<IAsyncDisposable> SubscribeAsync(string channel, Action<Notification> handler, CancellationToken cancellationToken)
    {
        var subscription = Hub.Subscribe(channel, handler);
        _wantListening = true;
        try
        {
            await GetChannelAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (BackendUnavailableException)
        {
            // Listened to when the connection is back (OnConnectionReplacedAsync).
        }
        return subscription;
    }

    /// <summary>A new connection replaced a lost one: listen on it again, and tell subscribers what they may have missed.</summary>
    public Task OnConnectionReplacedAsync() => ListenAgainAsync();

    /// <summary>Listens again if a subscription wants it, and tells subscribers what they may have missed.</summary>
    private async Task ListenAgainAsync()
    {
        try
        {
            if (_wantListening)
            {
                await GetChannelAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Tried again at the next publish or subscription; the fallback poll covers the workers meanwhile.
        }
        Hub.DeliverMissed();
    }

    /// <summary>The notifier's channel, with the exchange declared and, once wanted, this instance's queue consumed.</summary>
    private async Task<IChannel> GetChannelAsync(CancellationToken cancellationToken)
    {
        if (_channel is { IsOpen: true } open && (_listening || !_wantListening))
        {
            return open;
        }
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_channel is not { IsOpen: true })
            {
                _channel?.Dispose();
                _channel = null;
                _listening = false;
                var (connection, _, _) = await _connection.GetAsync(cancellationToken).ConfigureAwait(false);
                var channel = await connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
                await _topology.DeclareNotifyExchangeAsync(channel, cancellationToken).ConfigureAwait(false);
                _channel = channel;
            }
            if (_wantListening && !_listening)
            {
                // Named by the server; gone with the channel's connection (exclusive) or its consumer (auto-delete).
                var queue = await _channel.QueueDeclareAsync("", durable: false, exclusive: true, autoDelete: true, cancellationToken: cancellationToken).ConfigureAwait(false);
                await _channel.QueueBindAsync(queue.QueueName, _topology.NotifyExchange, "", cancellationToken: cancellationToken).ConfigureAwait(false);
                var listeningOn = _channel;
                var consumer = new BrokerCancellableConsumer(listeningOn, () => OnCancelledByBroker(listeningOn));
                consumer.ReceivedAsync += OnMessageAsync;
                await _channel.BasicConsumeAsync(queue.QueueName, autoAck: true, consumer, cancellationToken).ConfigureAwait(false);
                _listening = true;
                ListeningQueue = queue.QueueName;
            }
            return _channel;
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>The broker queue this instance listens on (tests delete it).</summary>
    internal string? ListeningQueue { get; private set; }

    /// <summary>
    /// The broker cancelled the consumer of this instance's queue (deleted by hand, say) on a channel it left open: other
    /// instances' notifications no longer reach this one, and nothing else would listen again before a reconnect. A new
    /// queue is declared, bound and consumed now, and subscribers are told that they may have missed notifications.
    /// </summary>
    private void OnCancelledByBroker(IChannel channel)
    {
        if (!ReferenceEquals(_channel, channel) || _disposed)
        {
            return;
        }
        _listening = false;
        _ = Task.Run(ListenAgainAsync);
    }

    private Task OnMessageAsync(object sender, BasicDeliverEventArgs e)
    {
        // One consumer on the channel and the client's dispatch one at a time: notifications arrive in publish order.
        if (e.BasicProperties.AppId != _sender && e.BasicProperties.Type is { } channel)
        {
            Hub.Deliver(new Notification(channel, Encoding.UTF8.GetString(e.Body.Span)));
        }
        return Task.CompletedTask;
    }

    /// <summary>Closes the notifier's channel (its queue goes with it).</summary>
    public async ValueTask DisposeAsync()
    {
        _disposed = true;
        try
        {
            if (_channel is { IsOpen: true } channel && !await RabbitMqConnection.CloseWithinAsync(channel.CloseAsync(), channel).ConfigureAwait(false))
            {
                _lock.Dispose();
                return;
            }
        }
        catch (Exception e) when (e is global::RabbitMQ.Client.Exceptions.AlreadyClosedException or IOException or ObjectDisposedException)
        {
            // Its connection is gone already.
        }
        _channel?.Dispose();
        _lock.Dispose();
    }
}
