using Conveyor.Backends;
using Conveyor.Conformance;

namespace Conveyor.Postgres.Tests;

public sealed class PostgresNotifierTests : NotifierConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => PostgresTestBackend.CreateAsync(time);

    protected override Task<IConveyorBackend> CreatePeerBackendAsync(IConveyorBackend backend, TimeProvider time) => PostgresTestBackend.CreatePeerAsync(backend, time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => PostgresTestBackend.DisposeAsync(backend);
}
