using Conveyor.Backends;
using Conveyor.Conformance;
using Conveyor.TestBackends;

namespace Conveyor.Postgres.Tests;

/// <summary>Builds each test's PostgreSQL backend in a fresh schema of its own and drops it afterwards.</summary>
public sealed class PostgresTestBackend : IConformanceBackendFactory
{
    public Task<IConveyorBackend> CreateAsync(TimeProvider time) => this.MigrateOrDisposeAsync(TestServers.FreshPostgres().Create(time));

    /// <summary>Another instance on <paramref name="backend"/>'s schema, as another process would open it.</summary>
    public Task<IConveyorBackend> CreatePeerAsync(IConveyorBackend backend, TimeProvider time) =>
        Task.FromResult(new PostgresDatabase(TestServers.Postgres, ((PostgresBackend)backend).Schema).Create(time));

    public async ValueTask DisposeAsync(IConveyorBackend backend)
    {
        var postgres = (PostgresBackend)backend;
        try
        {
            await postgres.DropSchemaAsync(CancellationToken.None);
        }
        finally
        {
            await postgres.DisposeAsync();
        }
    }
}
