using Conveyor.Backends;
using Conveyor.Conformance;

namespace Conveyor.Sqlite.Tests;

public sealed class SqliteStoreTests : StoreConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => SqliteTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => SqliteTestBackend.DisposeAsync(backend);
}

public sealed class SqliteStoreListTests : StoreListConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => SqliteTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => SqliteTestBackend.DisposeAsync(backend);
}

public sealed class SqliteRetentionTests : RetentionConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => SqliteTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => SqliteTestBackend.DisposeAsync(backend);
}
