using Conveyor.Backends;
using Conveyor.Conformance;

namespace Conveyor.Postgres.Tests;

public sealed class PostgresStoreTests : StoreConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => PostgresTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => PostgresTestBackend.DisposeAsync(backend);
}

public sealed class PostgresStoreListTests : StoreListConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => PostgresTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => PostgresTestBackend.DisposeAsync(backend);
}

public sealed class PostgresRetentionTests : RetentionConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => PostgresTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => PostgresTestBackend.DisposeAsync(backend);
}
