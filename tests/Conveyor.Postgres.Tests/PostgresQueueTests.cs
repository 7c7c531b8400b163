using Conveyor.Backends;
using Conveyor.Conformance;

namespace Conveyor.Postgres.Tests;

public sealed class PostgresQueueEnqueueTests : QueueEnqueueConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => PostgresTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => PostgresTestBackend.DisposeAsync(backend);
}

public sealed class PostgresQueueFetchTests : QueueFetchConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => PostgresTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => PostgresTestBackend.DisposeAsync(backend);
}

public sealed class PostgresQueueLeaseTests : QueueLeaseConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => PostgresTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => PostgresTestBackend.DisposeAsync(backend);
}

public sealed class PostgresQueueScheduleTests : QueueScheduleConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => PostgresTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => PostgresTestBackend.DisposeAsync(backend);
}

public sealed class PostgresQueueCancelRetryTests : QueueCancelRetryConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => PostgresTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => PostgresTestBackend.DisposeAsync(backend);
}

public sealed class PostgresQueueWaitTests : QueueWaitConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => PostgresTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => PostgresTestBackend.DisposeAsync(backend);
}
