using Conveyor.Backends;
using Conveyor.Conformance;

namespace Conveyor.Redis.Tests;

public sealed class RedisCoordinationTests : CoordinationConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => RedisTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => RedisTestBackend.DisposeAsync(backend);
}

public sealed class RedisLeadershipTests : LeadershipConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => RedisTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => RedisTestBackend.DisposeAsync(backend);
}
