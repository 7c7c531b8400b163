using Conveyor.Backends;
using Conveyor.TestBackends;
using StackExchange.Redis;

namespace Conveyor.Redis.Tests;

// Registered with the other suites in RedisConformance.cs; what only Redis has to say about its notifier is here.
public sealed partial class RedisNotifierTests
{
    [Fact]
    public async Task The_echo_of_an_own_notification_is_not_delivered_twice()
    {
        var peer = await NewPeerAsync();
        var (inbox, _) = await SubscribeAsync(Notifier, "conformance");

        await Notifier.PublishAsync("conformance", "own", Timeout);
        // Published after "own" reached Redis, so Redis sends it to this instance after own's echo.
        await peer.Notifier.PublishAsync("conformance", "marker", Timeout);
        await inbox.WaitForAsync(n => n.Payload == "marker", TimeSpan.FromSeconds(5));

        Assert.Equal(["own", "marker"], inbox.Received.Select(n => n.Payload));
    }

    [Fact]
    public async Task A_wake_up_published_by_a_script_is_a_ready_notification_for_its_queue()
    {
        var (inbox, _) = await SubscribeAsync(Notifier, NotifierChannels.Ready);

        await EnqueueAsync(NewMessage("reports"));

        // The enqueue script publishes on {p}:wake; this instance hears it through Redis like every other.
        await inbox.WaitForAsync(n => n.Payload == "reports", TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task Abandoning_leases_publishes_ready_for_each_queue_it_refills()
    {
        // Both ways back to ready: "started" by an interrupted attempt, "unstarted" unspent.
        await EnqueueAsync(NewMessage("started"));
        await EnqueueAsync(NewMessage("unstarted"));
        var leases = await FetchAsync(2, "started", "unstarted");
        Assert.Empty(await Queue.StartAsync([leases[0].Ref], Timeout));
        var inbox = await WakeInboxOnPeerAsync();

        Assert.Equal(2, (await Queue.AbandonLeasesAsync(WorkerId, Timeout)).Count);

        await inbox.WaitForAsync(n => n.Payload == "started", TimeSpan.FromSeconds(1));
        await inbox.WaitForAsync(n => n.Payload == "unstarted", TimeSpan.FromSeconds(1));
    }

    [Fact]
    public async Task Release_of_a_started_lease_publishes_ready()
    {
        await EnqueueAsync(NewMessage("reports"));
        var lease = await FetchStartedAsync("reports");
        var inbox = await WakeInboxOnPeerAsync();

        await Queue.ReleaseAsync([lease.Ref], Timeout);

        await inbox.WaitForAsync(n => n.Payload == "reports", TimeSpan.FromSeconds(1));
    }

    /// <summary>Subscribes on a peer opened now, so that the wake-ups of earlier enqueues cannot reach it.</summary>
    private async Task<Inbox> WakeInboxOnPeerAsync()
    {
        var peer = await NewPeerAsync();
        var (inbox, _) = await SubscribeAsync(peer.Notifier, NotifierChannels.Ready);
        return inbox;
    }

    [Fact]
    public async Task After_the_subscription_connection_is_killed_subscribers_get_a_missed_notification_and_then_new_ones()
    {
        var name = "cvtest-" + Guid.NewGuid().ToString("N");
        var options = RedisUrl.Parse(TestServers.Redis);
        options.ClientName = name;
        await using var connection = await ConnectionMultiplexer.ConnectAsync(options);
        var redis = (RedisBackend)Backend;
        await using var victim = RedisTestBackend.KeyspaceOf(redis).Create(connection, Time);
        await victim.MigrateAsync(Timeout);
        var (inbox, _) = await SubscribeAsync(victim.Notifier, "conformance");

        // Only this test's connections carry its client name: the other tests' subscriptions are untouched.
        var shared = await RedisTestBackend.ConnectionAsync();
        var server = shared.GetServer(shared.GetEndPoints()[0]);
        foreach (var client in (await server.ClientListAsync()).Where(c => c.Name == name))
        {
            await server.ClientKillAsync(client.Id, skipMe: false);
        }

        await inbox.WaitForAsync(n => n.Missed, TimeSpan.FromSeconds(10));
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        // Resubscribed by StackExchange.Redis after the reconnect: a notification published now arrives.
        while (true)
        {
            var payload = "after-" + Guid.NewGuid().ToString("N");
            await Notifier.PublishAsync("conformance", payload, Timeout);
            try
            {
                await inbox.WaitForAsync(n => n.Payload == payload, TimeSpan.FromMilliseconds(500));
                break;
            }
            catch (Xunit.Sdk.FailException) when (DateTime.UtcNow < deadline)
            {
                // The resubscription may land a moment after the reconnect event.
            }
        }
    }
}
