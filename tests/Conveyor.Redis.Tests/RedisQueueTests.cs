using Conveyor.Backends;
using Conveyor.Conformance;

namespace Conveyor.Redis.Tests;

public sealed class RedisQueueEnqueueTests : QueueEnqueueConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => RedisTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => RedisTestBackend.DisposeAsync(backend);
}

public sealed class RedisQueueFetchTests : QueueFetchConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => RedisTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => RedisTestBackend.DisposeAsync(backend);
}

public sealed class RedisQueueLeaseTests : QueueLeaseConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => RedisTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => RedisTestBackend.DisposeAsync(backend);
}

public sealed class RedisQueueScheduleTests : QueueScheduleConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => RedisTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => RedisTestBackend.DisposeAsync(backend);
}

public sealed class RedisQueueCancelRetryTests : QueueCancelRetryConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => RedisTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => RedisTestBackend.DisposeAsync(backend);
}

public sealed class RedisQueueWaitTests : QueueWaitConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => RedisTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => RedisTestBackend.DisposeAsync(backend);
}
