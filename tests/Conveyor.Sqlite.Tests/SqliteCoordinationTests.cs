using Conveyor.Backends;
using Conveyor.Conformance;

namespace Conveyor.Sqlite.Tests;

public sealed class SqliteCoordinationTests : CoordinationConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => SqliteTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => SqliteTestBackend.DisposeAsync(backend);
}

public sealed class SqliteLeadershipTests : LeadershipConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => SqliteTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => SqliteTestBackend.DisposeAsync(backend);
}
