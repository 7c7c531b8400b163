namespace Conveyor.RabbitMQ.Tests;

// Registered with the other suites in RabbitMqConformance.cs; what only RabbitMQ has to say about its notifier is here.
public sealed partial class RabbitMqNotifierTests
{
    [Fact]
    public async Task The_echo_of_an_own_notification_is_not_delivered_twice()
    {
        var peer = await NewPeerAsync();
        var (peerInbox, _) = await SubscribeAsync(peer.Notifier, "conformance");
        var (inbox, _) = await SubscribeAsync(Notifier, "conformance");

        await Notifier.PublishAsync("conformance", "own", Timeout);
        // The fanout put "own" in every bound queue at once, this instance's too, ahead of "marker".
        await peerInbox.WaitForAsync(n => n.Payload == "own", TimeSpan.FromSeconds(5));
        await peer.Notifier.PublishAsync("conformance", "marker", Timeout);
        await inbox.WaitForAsync(n => n.Payload == "marker", TimeSpan.FromSeconds(5));

        Assert.Equal(["own", "marker"], inbox.Received.Select(n => n.Payload));
    }

    [Fact]
    public async Task An_instance_whose_queue_the_broker_deletes_listens_again_and_tells_its_subscribers_they_may_have_missed_some()
    {
        var peer = await NewPeerAsync();
        var (inbox, _) = await SubscribeAsync(Notifier, "conformance");
        await peer.Notifier.PublishAsync("conformance", "before", Timeout);
        await inbox.WaitForAsync(n => n.Payload == "before", TimeSpan.FromSeconds(5));
        var rabbit = (RabbitMqNotifier)Notifier;
        var deleted = rabbit.ListeningQueue!;

        // An operator deletes this instance's queue (rabbitmqctl: an exclusive queue refuses other connections' deletes):
        // the broker cancels its consumer and leaves the channel open.
        await Conveyor.TestBackends.ServiceScripts.RunAsync("rabbitmq", ["delete-queue", deleted]);

        await inbox.WaitForAsync(n => n.Missed, TimeSpan.FromSeconds(10));
        Assert.NotEqual(deleted, rabbit.ListeningQueue);
        await peer.Notifier.PublishAsync("conformance", "after", Timeout);
        await inbox.WaitForAsync(n => n.Payload == "after", TimeSpan.FromSeconds(5));
    }
}
