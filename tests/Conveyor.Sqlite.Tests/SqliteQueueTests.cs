using Conveyor.Backends;
using Conveyor.Conformance;

namespace Conveyor.Sqlite.Tests;

public sealed class SqliteQueueEnqueueTests : QueueEnqueueConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => SqliteTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => SqliteTestBackend.DisposeAsync(backend);
}

public sealed class SqliteQueueFetchTests : QueueFetchConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => SqliteTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => SqliteTestBackend.DisposeAsync(backend);
}

public sealed class SqliteQueueLeaseTests : QueueLeaseConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => SqliteTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => SqliteTestBackend.DisposeAsync(backend);
}

public sealed class SqliteQueueScheduleTests : QueueScheduleConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => SqliteTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => SqliteTestBackend.DisposeAsync(backend);
}

public sealed class SqliteQueueCancelRetryTests : QueueCancelRetryConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => SqliteTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => SqliteTestBackend.DisposeAsync(backend);
}

public sealed class SqliteQueueWaitTests : QueueWaitConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => SqliteTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => SqliteTestBackend.DisposeAsync(backend);
}
