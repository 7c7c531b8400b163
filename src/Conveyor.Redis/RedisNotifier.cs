using Conveyor.Backends;
using StackExchange.Redis;

namespace Conveyor.Redis;

/// <summary>
/// The Redis backend's notifier: Redis pub/sub under the backend's key prefix. Every Conveyor channel travels on one
/// Redis channel, <c>{p}:notify</c>, as an envelope of sender id, channel and payload, so that one subscription per
/// backend instance serves every channel; the wake-ups the Lua scripts publish on <c>{p}:wake</c> (payload: the queue)
/// are delivered as <see cref="NotifierChannels.Ready"/>. What this instance publishes reaches its own subscribers
/// through the <see cref="Hub"/> at once, and its echo from Redis is ignored. See docs/redis.md.
/// </summary>
internal sealed class RedisNotifier : INotifier
{
    /// <summary>The largest payload, in UTF-8 bytes: 8,000 as on PostgreSQL (Redis itself would take 512 MB), so that
    /// code written against one backend runs on the others.</summary>
    public const int MaxPayload = 8000;

    /// <summary>Length of <see cref="_sender"/>: a GUID in 32 hex digits.</summary>
    private const int SenderLength = 32;

    private readonly RedisChannel _notifyChannel;
    private readonly RedisChannel _wakeChannel;
    // Tells this instance's envelopes apart from other instances' (another process, or another backend instance on a
    // shared multiplexer: both subscribe to the same Redis channel).
    private readonly string _sender = Guid.NewGuid().ToString("N");
    private readonly Func<CancellationToken, ValueTask<IConnectionMultiplexer>> _connect;
    private ChannelMessageQueue? _notifyQueue;
    private ChannelMessageQueue? _wakeQueue;

    /// <param name="keyBase">The backend's key base, <c>{prefix}:</c>.</param>
    /// <param name="connect">Connects the backend (and through it <see cref="AttachAsync"/>) when it is not yet.</param>
    public RedisNotifier(string keyBase, Func<CancellationToken, ValueTask<IConnectionMultiplexer>> connect)
    {
        _notifyChannel = RedisChannel.Literal(keyBase + "notify");
        _wakeChannel = RedisChannel.Literal(keyBase + "wake");
        _connect = connect;
    }

    /// <summary>This instance's subscriptions.</summary>
    public NotificationHub Hub { get; } = new();

    /// <summary>Subscribes to the two Redis channels; the backend calls it once, when it connects. A
    /// <see cref="ChannelMessageQueue"/> handles its messages one at a time, in the order Redis sent them (a handler
    /// passed to <c>SubscribeAsync</c> would run concurrently and reorder them).</summary>
    public async Task AttachAsync(IConnectionMultiplexer connection)
    {
        var subscriber = connection.GetSubscriber();
        _notifyQueue = await subscriber.SubscribeAsync(_notifyChannel).ConfigureAwait(false);
        _notifyQueue.OnMessage(OnEnvelope);
        _wakeQueue = await subscriber.SubscribeAsync(_wakeChannel).ConfigureAwait(false);
        _wakeQueue.OnMessage(OnWake);
    }

    /// <summary>Ends the Redis subscriptions of this instance (other instances on a shared multiplexer keep theirs).</summary>
    public async Task DetachAsync()
    {
        if (_notifyQueue is { } notify)
        {
            await notify.UnsubscribeAsync().ConfigureAwait(false);
        }
        if (_wakeQueue is { } wake)
        {
            await wake.UnsubscribeAsync().ConfigureAwait(false);
        }
    }

    /// <inheritdoc cref="DetachAsync"/>
    public void Detach()
    {
        _notifyQueue?.Unsubscribe();
        _wakeQueue?.Unsubscribe();
    }

    /// <inheritdoc />
    public async ValueTask PublishAsync(string channel, string payload, CancellationToken cancellationToken)
    {
        NotifierPayload.Check(channel, payload, MaxPayload);
        Hub.Deliver(new Notification(channel, payload));
        var connection = await _connect(cancellationToken).ConfigureAwait(false);
        await connection.GetSubscriber().PublishAsync(_notifyChannel, Envelope(_sender, channel, payload)).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async ValueTask<IAsyncDisposable> SubscribeAsync(string channel, Action<Notification> handler, CancellationToken cancellationToken)
    {
        var subscription = Hub.Subscribe(channel, handler);
        try
        {
            // Once connected, the Redis subscriptions are in place: what is published from now on reaches the hub.
            await _connect(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await subscription.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        return subscription;
    }

    /// <summary>Sender id (32 characters), channel, a newline, payload: channel names hold no newline, payloads may.</summary>
    internal static string Envelope(string sender, string channel, string payload) => string.Concat(sender, channel, "\n", payload);

    /// <summary>Reads an envelope; false for one this reader cannot parse.</summary>
    internal static bool TryOpen(string envelope, out string sender, out string channel, out string payload)
    {
        sender = channel = payload = "";
        var newline = envelope.Length > SenderLength ? envelope.IndexOf('\n', SenderLength) : -1;
        if (newline < 0)
        {
            return false;
        }
        sender = envelope[..SenderLength];
        channel = envelope[SenderLength..newline];
        payload = envelope[(newline + 1)..];
        return true;
    }

    private void OnEnvelope(ChannelMessage message)
    {
        var text = (string?)message.Message;
        if (text is null || text.StartsWith(_sender, StringComparison.Ordinal) || !TryOpen(text, out _, out var channel, out var payload))
        {
            // Our own echo (delivered at publish time), or not an envelope.
            return;
        }
        Hub.Deliver(new Notification(channel, payload));
    }

    private void OnWake(ChannelMessage message) =>
        // The scripts cannot tell their own instance apart, so their wake-ups reach this instance through Redis too.
        Hub.Deliver(new Notification(NotifierChannels.Ready, (string?)message.Message ?? ""));
}
