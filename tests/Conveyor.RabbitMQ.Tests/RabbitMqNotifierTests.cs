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
}
