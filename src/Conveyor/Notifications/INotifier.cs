namespace Conveyor.Backends;

/// <summary>A message on a named channel of a backend's <see cref="INotifier"/>.</summary>
/// <param name="Channel">The channel it was published on.</param>
/// <param name="Payload">What was published; empty when <paramref name="Missed"/>.</param>
/// <param name="Missed">True when the notifier may have lost notifications on this channel (its connection broke and is
/// back): a subscriber that keeps state from notifications looks again at the source. Wake-up subscribers treat it as
/// a wake-up for every queue.</param>
public readonly record struct Notification(string Channel, string Payload, bool Missed = false);

/// <summary>
/// The notifier role: publish/subscribe on named channels, across every process that uses the same backend (the same
/// SQLite file, PostgreSQL schema, Redis key prefix or RabbitMQ exchange prefix), implemented the way the engine does
/// it. Notifications are hints, not data: at most once, possibly lost on a broken connection (then a
/// <see cref="Notification.Missed"/> notification follows the reconnect), never stored. Workers wait on it for work;
/// the event stream and leadership changes travel on it.
/// </summary>
/// <remarks>
/// Guarantees every implementation gives, checked by <c>NotifierConformance</c>: a notification published after
/// <see cref="SubscribeAsync"/> returned reaches that subscriber, in this process at once (no round trip) and in
/// another process on a healthy connection within 100 ms; payloads up to
/// <see cref="BackendCapabilities.MaxNotificationPayload"/> bytes arrive unchanged; one publisher's notifications on one
/// channel arrive in the order published; a disposed subscription gets nothing more.
/// </remarks>
public interface INotifier
{
    /// <summary>Publishes <paramref name="payload"/> on <paramref name="channel"/> to every subscriber of every process,
    /// this one included. Subscribers in this process are called before this returns. Throws
    /// <see cref="ArgumentException"/> when the payload is longer than <see cref="BackendCapabilities.MaxNotificationPayload"/>
    /// bytes in UTF-8.</summary>
    ValueTask PublishAsync(string channel, string payload, CancellationToken cancellationToken);

    /// <summary>Calls <paramref name="handler"/> for every notification on <paramref name="channel"/> until the returned
    /// subscription is disposed. The handler runs on the notifier's thread: it must be quick, must not block and must
    /// not throw (an exception is caught and dropped). Returns once notifications published from now on reach it.</summary>
    ValueTask<IAsyncDisposable> SubscribeAsync(string channel, Action<Notification> handler, CancellationToken cancellationToken);
}

/// <summary>The channels Conveyor itself uses. Channel names are letters, digits, <c>.</c>, <c>-</c> and <c>_</c>.</summary>
public static class NotifierChannels
{
    /// <summary>Work became ready (enqueued, promoted, released, requeued, retried, queue resumed). Payload: the queue
    /// name, or empty for any queue. Workers wait on it instead of polling.</summary>
    public const string Ready = "ready";

    /// <summary>Task events from other processes (see <c>TaskEventBus</c>). Payload: a batch of events as JSON.</summary>
    public const string Events = "events";

    /// <summary>Workflow events from other processes (see <c>TaskEventBus.SubscribeWorkflows</c>). Payload: a batch of
    /// workflow events as JSON. A channel of its own, so that a process of an earlier version ignores them.</summary>
    public const string WorkflowEvents = "events.workflows";

    /// <summary>Some process streams events to a client: every process publishes its task events on
    /// <see cref="Events"/> for a while after hearing it. Payload: the asking process's id.</summary>
    public const string EventsWanted = "events.wanted";

    /// <summary>A leader stepped down or was elected. Payload: the leadership's name.</summary>
    public const string Leader = "leader";

    /// <summary>A periodic schedule was created, changed or deleted, so the leader looks at the schedules again at once.
    /// Payload: the schedule's name.</summary>
    public const string Schedules = "schedules";

    /// <summary>Whether <paramref name="channel"/> is a valid channel name: 1 to 63 letters, digits, <c>.</c>,
    /// <c>-</c> or <c>_</c> (63 is PostgreSQL's identifier limit, less a prefix is the backend's concern).</summary>
    public static bool IsValid(string? channel)
    {
        if (string.IsNullOrEmpty(channel) || channel.Length > 63)
        {
            return false;
        }
        foreach (var c in channel)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_'))
            {
                return false;
            }
        }
        return true;
    }
}
