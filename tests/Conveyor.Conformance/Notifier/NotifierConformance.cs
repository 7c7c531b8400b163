using System.Collections.Concurrent;
using System.Diagnostics;

namespace Conveyor.Conformance;

/// <summary>
/// The notifier role, on the system clock: publish/subscribe within one instance and between two instances on the same
/// storage (two processes' views, from <see cref="IConformanceBackendFactory.CreatePeerAsync"/>), and the ready
/// notifications that the queue role publishes and workers wait on. Nothing here polls: a notification that is not
/// delivered fails the test at its bound (1 s for one notification, however loaded the machine), and latency is held
/// to the contract's 100 ms by the median of several.
/// </summary>
public abstract class NotifierConformance<TFactory> : ConformanceTest
    where TFactory : IConformanceBackendFactory, new()
{
    /// <summary>How long one notification may take before the test fails; the contract's 100 ms is checked on medians.</summary>
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(1);

    /// <summary>Runs on the system clock: notifications take real time.</summary>
    protected NotifierConformance() : base(new TFactory(), TimeProvider.System)
    {
    }

    /// <summary>
    /// The instance that a test between two instances listens or publishes on: a peer on the same storage, as another
    /// process would open it (<see cref="ConformanceTest.NewPeerAsync"/>). Gated by
    /// <see cref="BackendCapabilities.CrossProcessNotifications"/>: without it, <see cref="ConformanceTest.Backend"/>
    /// itself, so that the test asserts on the one instance that hears the notification.
    /// </summary>
    protected Task<IConveyorBackend> OtherInstanceAsync() => Gate(
        Backend.Capabilities.CrossProcessNotifications,
        "SQLite on Windows has no Unix datagram sockets, so its notifier reaches only the instance that published "
        + "(docs/sqlite.md); other processes' workers find work by their fallback poll (WorkerOptions.FetchWait)",
        NewPeerAsync,
        () => Task.FromResult(Backend));

    /// <summary>The notifier of <see cref="ConformanceTest.Backend"/>.</summary>
    protected INotifier Notifier => Backend.Notifier;

    /// <summary>Collects what a subscription receives, and lets a test wait for what it expects.</summary>
    protected sealed class Inbox
    {
        private readonly ConcurrentQueue<(Notification Notification, long At)> _received = new();
        private volatile TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>The handler to subscribe.</summary>
        public void Add(Notification notification)
        {
            _received.Enqueue((notification, Stopwatch.GetTimestamp()));
            Interlocked.Exchange(ref _changed, new(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
        }

        /// <summary>Everything received so far, in order.</summary>
        public IReadOnlyList<Notification> Received => _received.Select(r => r.Notification).ToList();

        /// <summary>Waits until <paramref name="match"/> holds for a received notification; returns it and when it came
        /// (a <see cref="Stopwatch"/> timestamp). Fails the test at <paramref name="bound"/>.</summary>
        public async Task<(Notification Notification, long At)> WaitForAsync(Func<Notification, bool> match, TimeSpan bound)
        {
            var deadline = Stopwatch.GetTimestamp() + (long)(bound.TotalSeconds * Stopwatch.Frequency);
            while (true)
            {
                var changed = _changed.Task;
                foreach (var entry in _received)
                {
                    if (match(entry.Notification))
                    {
                        return entry;
                    }
                }
                var left = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), deadline);
                if (left <= TimeSpan.Zero)
                {
                    Assert.Fail($"no matching notification within {bound}; received: {string.Join(", ", _received.Select(r => $"{r.Notification.Channel}:{Short(r.Notification.Payload)}"))}");
                }
                try
                {
                    await changed.WaitAsync(left);
                }
                catch (TimeoutException)
                {
                    // Looked at once more above, then fails.
                }
            }
        }

        private static string Short(string payload) => payload.Length > 40 ? payload[..40] + "…" : payload;
    }

    /// <summary>Subscribes an inbox on <paramref name="notifier"/>'s <paramref name="channel"/>; disposed with the test's backends.</summary>
    protected async Task<(Inbox Inbox, IAsyncDisposable Subscription)> SubscribeAsync(INotifier notifier, string channel)
    {
        var inbox = new Inbox();
        var subscription = await notifier.SubscribeAsync(channel, inbox.Add, Timeout);
        return (inbox, subscription);
    }

    private static string Unique(string prefix) => prefix + "-" + Guid.NewGuid().ToString("N")[..12];

    [Fact]
    public async Task A_subscriber_in_the_same_instance_has_the_notification_when_publish_returns()
    {
        var (inbox, _) = await SubscribeAsync(Notifier, "conformance");

        await Notifier.PublishAsync("conformance", "hello", Timeout);

        var received = Assert.Single(inbox.Received);
        Assert.Equal(new Notification("conformance", "hello"), received);
    }

    [Fact]
    public async Task A_subscriber_on_another_instance_receives_each_notification_within_100_ms_at_the_median()
    {
        var peer = await OtherInstanceAsync();
        var (inbox, _) = await SubscribeAsync(peer.Notifier, "conformance");
        var latencies = new List<TimeSpan>();

        for (var i = 0; i < 11; i++)
        {
            var payload = Unique("n" + i);
            var sent = Stopwatch.GetTimestamp();
            await Notifier.PublishAsync("conformance", payload, Timeout);
            var (_, at) = await inbox.WaitForAsync(n => n.Payload == payload, Bound);
            latencies.Add(Stopwatch.GetElapsedTime(sent, at));
        }

        latencies.Sort();
        Assert.True(latencies[latencies.Count / 2] < TimeSpan.FromMilliseconds(100),
            $"median {latencies[latencies.Count / 2].TotalMilliseconds:F1} ms; all: {string.Join(", ", latencies.Select(l => l.TotalMilliseconds.ToString("F1", System.Globalization.CultureInfo.InvariantCulture)))}");
    }

    [Fact]
    public async Task A_publisher_on_another_instance_reaches_this_one_too()
    {
        var peer = await OtherInstanceAsync();
        var (inbox, _) = await SubscribeAsync(Notifier, "conformance");

        await peer.Notifier.PublishAsync("conformance", "from-peer", Timeout);

        await inbox.WaitForAsync(n => n.Payload == "from-peer", Bound);
    }

    [Fact]
    public async Task One_publishers_notifications_arrive_in_the_order_published()
    {
        var peer = await OtherInstanceAsync();
        var (inbox, _) = await SubscribeAsync(peer.Notifier, "conformance");

        for (var i = 0; i < 50; i++)
        {
            await Notifier.PublishAsync("conformance", i.ToString(System.Globalization.CultureInfo.InvariantCulture), Timeout);
        }

        await inbox.WaitForAsync(n => n.Payload == "49", Bound * 5);
        Assert.Equal(Enumerable.Range(0, 50).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            inbox.Received.Where(n => !n.Missed).Select(n => n.Payload));
    }

    [Fact]
    public async Task A_payload_at_the_size_limit_arrives_unchanged_on_another_instance()
    {
        var peer = await OtherInstanceAsync();
        var (inbox, _) = await SubscribeAsync(peer.Notifier, "conformance");
        // Two-byte characters, quotes, a backslash and a newline: whatever the engine's transport escapes.
        const string unit = "é\"\\\n{}";
        var limit = Backend.Capabilities.MaxNotificationPayload;
        var payload = new System.Text.StringBuilder();
        while (System.Text.Encoding.UTF8.GetByteCount(payload.ToString() + unit) <= limit - 1)
        {
            payload.Append(unit);
        }
        while (System.Text.Encoding.UTF8.GetByteCount(payload.ToString()) < limit)
        {
            payload.Append('x');
        }
        var text = payload.ToString();
        Assert.Equal(limit, System.Text.Encoding.UTF8.GetByteCount(text));

        await Notifier.PublishAsync("conformance", text, Timeout);

        var (received, _) = await inbox.WaitForAsync(n => n.Payload.Length > 0, Bound);
        Assert.Equal(text, received.Payload);
    }

    [Fact]
    public async Task A_payload_over_the_size_limit_is_refused_with_an_error_naming_the_limit()
    {
        var text = new string('x', Backend.Capabilities.MaxNotificationPayload + 1);

        var error = await Assert.ThrowsAsync<ArgumentException>(async () => await Notifier.PublishAsync("conformance", text, Timeout));

        Assert.Contains(Backend.Capabilities.MaxNotificationPayload.ToString(System.Globalization.CultureInfo.InvariantCulture), error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_invalid_channel_name_is_refused()
    {
        await Assert.ThrowsAsync<ArgumentException>(async () => await Notifier.PublishAsync("no spaces", "x", Timeout));
        await Assert.ThrowsAsync<ArgumentException>(async () => await Notifier.SubscribeAsync("", _ => { }, Timeout));
    }

    [Fact]
    public async Task Channels_are_separate()
    {
        var peer = await OtherInstanceAsync();
        var (other, _) = await SubscribeAsync(peer.Notifier, "conformance.other");
        var (inbox, _) = await SubscribeAsync(peer.Notifier, "conformance");

        await Notifier.PublishAsync("conformance", "one", Timeout);
        await Notifier.PublishAsync("conformance.other", "two", Timeout);

        await inbox.WaitForAsync(n => n.Payload == "one", Bound);
        await other.WaitForAsync(n => n.Payload == "two", Bound);
        Assert.DoesNotContain(inbox.Received, n => n.Payload == "two");
        Assert.DoesNotContain(other.Received, n => n.Payload == "one");
    }

    [Fact]
    public async Task Instances_on_other_storage_hear_nothing()
    {
        var stranger = await NewBackendAsync(Time);
        var (strangerInbox, _) = await SubscribeAsync(stranger.Notifier, "conformance");
        var peer = await OtherInstanceAsync();
        var (inbox, _) = await SubscribeAsync(peer.Notifier, "conformance");

        await Notifier.PublishAsync("conformance", "private", Timeout);
        await inbox.WaitForAsync(n => n.Payload == "private", Bound);
        // The peer heard it; a stranger on other storage would have heard it by now too if it could.
        await stranger.Notifier.PublishAsync("conformance", "marker", Timeout);
        await strangerInbox.WaitForAsync(n => n.Payload == "marker", Bound);

        Assert.DoesNotContain(strangerInbox.Received, n => n.Payload == "private");
    }

    [Fact]
    public async Task A_disposed_subscription_receives_nothing_more()
    {
        var peer = await OtherInstanceAsync();
        var (gone, subscription) = await SubscribeAsync(peer.Notifier, "conformance");
        var (kept, _) = await SubscribeAsync(peer.Notifier, "conformance");
        await Notifier.PublishAsync("conformance", "before", Timeout);
        await gone.WaitForAsync(n => n.Payload == "before", Bound);

        await subscription.DisposeAsync();
        await Notifier.PublishAsync("conformance", "after", Timeout);

        await kept.WaitForAsync(n => n.Payload == "after", Bound);
        Assert.DoesNotContain(gone.Received, n => n.Payload == "after");
    }

    [Fact]
    public async Task A_subscriber_that_throws_does_not_stop_the_others()
    {
        await Notifier.SubscribeAsync("conformance", _ => throw new InvalidOperationException("subscriber failed"), Timeout);
        var (inbox, _) = await SubscribeAsync(Notifier, "conformance");

        await Notifier.PublishAsync("conformance", "still", Timeout);

        await inbox.WaitForAsync(n => n.Payload == "still", Bound);
    }

    // The queue role's ready notifications, heard on another instance: what a worker in another process waits on.

    /// <summary>Subscribes on a peer to <see cref="NotifierChannels.Ready"/>, after one fetch there (a worker fetches
    /// before it waits, and a push-based backend starts consuming a queue at its first fetch).</summary>
    private async Task<Inbox> ReadyInboxOnPeerAsync(params string[] queues)
    {
        var peer = await OtherInstanceAsync();
        var (inbox, _) = await SubscribeAsync(peer.Notifier, NotifierChannels.Ready);
        Assert.Empty(await peer.Queue.FetchAsync(Request(1, queues), Timeout));
        return inbox;
    }

    private static Func<Notification, bool> ReadyFor(string queue) => n => n.Payload == queue || n.Payload.Length == 0;

    [Fact]
    public async Task Enqueue_publishes_ready_for_its_queue_to_other_instances()
    {
        var inbox = await ReadyInboxOnPeerAsync("reports");

        await EnqueueAsync(NewMessage("reports"));

        await inbox.WaitForAsync(ReadyFor("reports"), Bound);
    }

    [Fact]
    public async Task Release_publishes_ready()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();
        var inbox = await ReadyInboxOnPeerAsync();

        await Queue.ReleaseAsync([lease.Ref], Timeout);

        await inbox.WaitForAsync(ReadyFor(QueueNames.Default), Bound);
    }

    [Fact]
    public async Task Resume_publishes_ready()
    {
        await Queue.PauseQueueAsync(QueueNames.Default, Timeout);
        await EnqueueAsync(NewMessage());
        var inbox = await ReadyInboxOnPeerAsync();

        await Queue.ResumeQueueAsync(QueueNames.Default, Timeout);

        await inbox.WaitForAsync(ReadyFor(QueueNames.Default), Bound);
    }

    [Fact]
    public async Task Promotion_of_a_due_task_publishes_ready()
    {
        await EnqueueAsync(NewMessage() with { NotBefore = Now + TimeSpan.FromMilliseconds(300) });
        var inbox = await ReadyInboxOnPeerAsync();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (await Queue.PromoteDueAsync(Timeout) == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the task never became due");
            await Task.Delay(50);
        }

        await inbox.WaitForAsync(ReadyFor(QueueNames.Default), Bound);
    }

    [Fact]
    public async Task Requeue_of_an_expired_lease_publishes_ready()
    {
        await EnqueueAsync(NewMessage());
        Assert.Single(await Queue.FetchAsync(Request(1) with { LeaseDuration = TimeSpan.FromMilliseconds(200) }, Timeout));
        var inbox = await ReadyInboxOnPeerAsync();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while ((await Queue.RequeueExpiredLeasesAsync(Timeout)).Count == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the lease never expired");
            await Task.Delay(50);
        }

        await inbox.WaitForAsync(ReadyFor(QueueNames.Default), Bound);
    }

    [Fact]
    public async Task Manual_retry_of_a_dead_task_publishes_ready()
    {
        await EnqueueAsync(NewMessage() with { MaxAttempts = 1 });
        await DeadAsync(await FetchOneAsync());
        var inbox = await ReadyInboxOnPeerAsync();
        var id = (await Store.ListAsync(new TaskQuery { State = TaskState.Dead }, Timeout)).Items.Single().Id;

        Assert.Equal(RetryOutcome.Requeued, await Queue.RetryAsync(id, Timeout));

        await inbox.WaitForAsync(ReadyFor(QueueNames.Default), Bound);
    }
}
