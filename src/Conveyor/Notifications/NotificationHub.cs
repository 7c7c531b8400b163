using System.Collections.Concurrent;

namespace Conveyor.Backends;

/// <summary>
/// The in-process half of every notifier: keeps this process's subscriptions per channel and calls them. A backend's
/// notifier delivers what this process publishes through <see cref="Deliver"/> at once (no round trip) and sends it
/// to the other processes by its engine, whose copies it ignores when they come back; what other processes publish it
/// delivers here too.
/// </summary>
public sealed class NotificationHub
{
    // Copy on write: delivery reads a snapshot without a lock, subscribing is rare.
    private readonly ConcurrentDictionary<string, Subscription[]> _channels = new(StringComparer.Ordinal);

    /// <summary>Whether any subscription in this process listens on <paramref name="channel"/>.</summary>
    public bool HasSubscribers(string channel) => _channels.TryGetValue(channel, out var subscribers) && subscribers.Length > 0;

    /// <summary>The channels with at least one subscription in this process.</summary>
    public IReadOnlyList<string> Channels => _channels.Where(c => c.Value.Length > 0).Select(c => c.Key).ToArray();

    /// <summary>Adds a subscription; disposing it removes it.</summary>
    public IAsyncDisposable Subscribe(string channel, Action<Notification> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        if (!NotifierChannels.IsValid(channel))
        {
            throw new ArgumentException($"Channel '{channel}' is not valid: 1 to 63 letters, digits, '.', '-' or '_'.", nameof(channel));
        }
        var subscription = new Subscription(this, channel, handler);
        _channels.AddOrUpdate(channel, _ => [subscription], (_, existing) => [.. existing, subscription]);
        return subscription;
    }

    /// <summary>Calls every subscription of <paramref name="notification"/>'s channel in this process.</summary>
    public void Deliver(Notification notification)
    {
        if (!_channels.TryGetValue(notification.Channel, out var subscribers))
        {
            return;
        }
        foreach (var subscriber in subscribers)
        {
            if (subscriber.Active)
            {
                try
                {
                    subscriber.Handler(notification);
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    // A subscriber's failure must not stop the others, nor the publisher.
                }
            }
        }
    }

    /// <summary>Delivers a <see cref="Notification.Missed"/> notification on every channel with subscribers: after a
    /// reconnect, notifications sent meanwhile were lost.</summary>
    public void DeliverMissed()
    {
        foreach (var channel in Channels)
        {
            Deliver(new Notification(channel, "", Missed: true));
        }
    }

    private void Remove(Subscription subscription)
    {
        while (_channels.TryGetValue(subscription.Channel, out var existing))
        {
            var remaining = existing.Where(s => !ReferenceEquals(s, subscription)).ToArray();
            if (_channels.TryUpdate(subscription.Channel, remaining, existing))
            {
                return;
            }
        }
    }

    private sealed class Subscription(NotificationHub hub, string channel, Action<Notification> handler) : IAsyncDisposable
    {
        public string Channel { get; } = channel;
        public Action<Notification> Handler { get; } = handler;
        public volatile bool Active = true;

        public ValueTask DisposeAsync()
        {
            if (Active)
            {
                Active = false;
                hub.Remove(this);
            }
            return ValueTask.CompletedTask;
        }
    }
}

/// <summary>
/// A notifier that reaches this process only: the SQLite backend's within one process and the in-memory backend's.
/// Other processes find work by the worker's fallback poll.
/// </summary>
public sealed class InProcessNotifier : INotifier
{
    /// <summary>The largest payload, in UTF-8 bytes: 8,000, as on PostgreSQL, so that code tested here runs there.</summary>
    public const int MaxPayload = 8000;

    /// <summary>The subscriptions of this process.</summary>
    public NotificationHub Hub { get; } = new();

    /// <inheritdoc />
    public ValueTask PublishAsync(string channel, string payload, CancellationToken cancellationToken)
    {
        NotifierPayload.Check(channel, payload, MaxPayload);
        Hub.Deliver(new Notification(channel, payload));
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask<IAsyncDisposable> SubscribeAsync(string channel, Action<Notification> handler, CancellationToken cancellationToken) =>
        ValueTask.FromResult(Hub.Subscribe(channel, handler));
}

/// <summary>Checks of what is published, shared by the notifiers.</summary>
public static class NotifierPayload
{
    /// <summary>Throws <see cref="ArgumentException"/> naming what is wrong with <paramref name="channel"/> or
    /// <paramref name="payload"/>.</summary>
    public static void Check(string channel, string payload, int maxBytes)
    {
        ArgumentNullException.ThrowIfNull(payload);
        if (!NotifierChannels.IsValid(channel))
        {
            throw new ArgumentException($"Channel '{channel}' is not valid: 1 to 63 letters, digits, '.', '-' or '_'.", nameof(channel));
        }
        // Most payloads are short ASCII: count bytes only when the characters alone could exceed the bound.
        if (payload.Length * 3 > maxBytes && System.Text.Encoding.UTF8.GetByteCount(payload) > maxBytes)
        {
            throw new ArgumentException($"The payload is longer than this notifier's limit of {maxBytes} bytes in UTF-8.", nameof(payload));
        }
    }
}
