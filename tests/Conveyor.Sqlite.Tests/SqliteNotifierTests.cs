using Conveyor.Backends;
using Conveyor.Conformance;

namespace Conveyor.Sqlite.Tests;

public sealed class SqliteNotifierTests : NotifierConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => SqliteTestBackend.CreateAsync(time);

    protected override Task<IConveyorBackend> CreatePeerBackendAsync(IConveyorBackend backend, TimeProvider time) => SqliteTestBackend.CreatePeerAsync(backend, time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => SqliteTestBackend.DisposeAsync(backend);
}
