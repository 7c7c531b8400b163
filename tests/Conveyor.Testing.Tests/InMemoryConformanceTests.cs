using Conveyor.Backends;
using Conveyor.Conformance;

namespace Conveyor.Testing.Tests;

// The in-memory backend runs every conformance suite, with no capability gate: it is the reference state machine.
// A peer is another instance over the same storage, as another process would open the same database.

public sealed class InMemoryQueueEnqueueTests : QueueEnqueueConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => InMemoryTestBackend.CreateAsync(time);

    protected override Task<IConveyorBackend> CreatePeerBackendAsync(IConveyorBackend backend, TimeProvider time) => InMemoryTestBackend.CreatePeerAsync(backend, time);
}

public sealed class InMemoryQueueFetchTests : QueueFetchConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => InMemoryTestBackend.CreateAsync(time);

    protected override Task<IConveyorBackend> CreatePeerBackendAsync(IConveyorBackend backend, TimeProvider time) => InMemoryTestBackend.CreatePeerAsync(backend, time);
}

public sealed class InMemoryQueueLeaseTests : QueueLeaseConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => InMemoryTestBackend.CreateAsync(time);

    protected override Task<IConveyorBackend> CreatePeerBackendAsync(IConveyorBackend backend, TimeProvider time) => InMemoryTestBackend.CreatePeerAsync(backend, time);
}

public sealed class InMemoryQueueScheduleTests : QueueScheduleConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => InMemoryTestBackend.CreateAsync(time);

    protected override Task<IConveyorBackend> CreatePeerBackendAsync(IConveyorBackend backend, TimeProvider time) => InMemoryTestBackend.CreatePeerAsync(backend, time);
}

public sealed class InMemoryQueueCancelRetryTests : QueueCancelRetryConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => InMemoryTestBackend.CreateAsync(time);

    protected override Task<IConveyorBackend> CreatePeerBackendAsync(IConveyorBackend backend, TimeProvider time) => InMemoryTestBackend.CreatePeerAsync(backend, time);
}

public sealed class InMemoryQueueWaitTests : QueueWaitConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => InMemoryTestBackend.CreateAsync(time);

    protected override Task<IConveyorBackend> CreatePeerBackendAsync(IConveyorBackend backend, TimeProvider time) => InMemoryTestBackend.CreatePeerAsync(backend, time);
}

public sealed class InMemoryStoreTests : StoreConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => InMemoryTestBackend.CreateAsync(time);

    protected override Task<IConveyorBackend> CreatePeerBackendAsync(IConveyorBackend backend, TimeProvider time) => InMemoryTestBackend.CreatePeerAsync(backend, time);
}

public sealed class InMemoryStoreListTests : StoreListConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => InMemoryTestBackend.CreateAsync(time);

    protected override Task<IConveyorBackend> CreatePeerBackendAsync(IConveyorBackend backend, TimeProvider time) => InMemoryTestBackend.CreatePeerAsync(backend, time);
}

public sealed class InMemoryCoordinationTests : CoordinationConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => InMemoryTestBackend.CreateAsync(time);

    protected override Task<IConveyorBackend> CreatePeerBackendAsync(IConveyorBackend backend, TimeProvider time) => InMemoryTestBackend.CreatePeerAsync(backend, time);
}

public sealed class InMemoryLeadershipTests : LeadershipConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => InMemoryTestBackend.CreateAsync(time);

    protected override Task<IConveyorBackend> CreatePeerBackendAsync(IConveyorBackend backend, TimeProvider time) => InMemoryTestBackend.CreatePeerAsync(backend, time);
}

public sealed class InMemoryNotifierTests : NotifierConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => InMemoryTestBackend.CreateAsync(time);

    protected override Task<IConveyorBackend> CreatePeerBackendAsync(IConveyorBackend backend, TimeProvider time) => InMemoryTestBackend.CreatePeerAsync(backend, time);
}

internal static class InMemoryTestBackend
{
    public static Task<IConveyorBackend> CreateAsync(TimeProvider time) => Task.FromResult<IConveyorBackend>(new InMemoryBackend(time));

    public static Task<IConveyorBackend> CreatePeerAsync(IConveyorBackend backend, TimeProvider time) =>
        Task.FromResult<IConveyorBackend>(new InMemoryBackend(((InMemoryBackend)backend).Storage, time));
}
