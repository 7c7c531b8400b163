using Conveyor.Backends;
using Conveyor.Conformance;

namespace Conveyor.Redis.Tests;

public sealed class RedisStoreTests : StoreConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => RedisTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => RedisTestBackend.DisposeAsync(backend);
}

public sealed class RedisStoreListTests : StoreListConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => RedisTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => RedisTestBackend.DisposeAsync(backend);
}
