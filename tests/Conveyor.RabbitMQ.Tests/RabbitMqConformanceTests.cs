using Conveyor.Backends;
using Conveyor.Conformance;

namespace Conveyor.RabbitMQ.Tests;

public sealed class RabbitMqQueueEnqueueTests : QueueEnqueueConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => RabbitMqTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => RabbitMqTestBackend.DisposeAsync(backend);
}

public sealed class RabbitMqQueueFetchTests : QueueFetchConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => RabbitMqTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => RabbitMqTestBackend.DisposeAsync(backend);
}

public sealed class RabbitMqQueueLeaseTests : QueueLeaseConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => RabbitMqTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => RabbitMqTestBackend.DisposeAsync(backend);
}

public sealed class RabbitMqQueueScheduleTests : QueueScheduleConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => RabbitMqTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => RabbitMqTestBackend.DisposeAsync(backend);
}

public sealed class RabbitMqQueueCancelRetryTests : QueueCancelRetryConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => RabbitMqTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => RabbitMqTestBackend.DisposeAsync(backend);
}

public sealed class RabbitMqQueueWaitTests : QueueWaitConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => RabbitMqTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => RabbitMqTestBackend.DisposeAsync(backend);
}

public sealed class RabbitMqStoreTests : StoreConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => RabbitMqTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => RabbitMqTestBackend.DisposeAsync(backend);
}

public sealed class RabbitMqStoreListTests : StoreListConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => RabbitMqTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => RabbitMqTestBackend.DisposeAsync(backend);
}

public sealed class RabbitMqCoordinationTests : CoordinationConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => RabbitMqTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => RabbitMqTestBackend.DisposeAsync(backend);
}

public sealed class RabbitMqLeadershipTests : LeadershipConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => RabbitMqTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => RabbitMqTestBackend.DisposeAsync(backend);
}

public sealed class RabbitMqNotifierTests : NotifierConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => RabbitMqTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => RabbitMqTestBackend.DisposeAsync(backend);

    protected override Task<IConveyorBackend> CreatePeerBackendAsync(IConveyorBackend backend, TimeProvider time) =>
        RabbitMqTestBackend.CreatePeerAsync(backend, time);

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
