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
