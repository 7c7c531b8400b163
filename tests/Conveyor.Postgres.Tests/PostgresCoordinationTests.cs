using Conveyor.Backends;
using Conveyor.Conformance;

namespace Conveyor.Postgres.Tests;

public sealed class PostgresCoordinationTests : CoordinationConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => PostgresTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => PostgresTestBackend.DisposeAsync(backend);
}

public sealed class PostgresLeadershipTests : LeadershipConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => PostgresTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => PostgresTestBackend.DisposeAsync(backend);
}
