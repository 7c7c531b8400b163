using Conveyor.Backends;
using Conveyor.Conformance;

namespace Conveyor.Postgres.Tests;

/// <summary>Builds each test's PostgreSQL backend in a fresh schema of its own and drops it afterwards.</summary>
public sealed class PostgresTestBackend : IConformanceBackendFactory
{
    public const string Variable = "CONVEYOR_TEST_POSTGRES";

    /// <summary>The test server's URL or connection string; fails (never skips) when it is not set.</summary>
    public static string ConnectionString =>
        Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } value
            ? value
            : throw new InvalidOperationException(
                $"{Variable} is not set, so the PostgreSQL tests have no server. Start one with "
                + "'source scripts/services/postgres.sh' (exports the variable into your shell) or "
                + "'eval \"$(bash scripts/services/postgres.sh start)\"', or set it to a postgresql://user:pass@host:port/db URL; "
                + "'bash scripts/test.sh' starts it by itself.");

    public async Task<IConveyorBackend> CreateAsync(TimeProvider time)
    {
        var backend = new PostgresDatabase(ConnectionString, "t_" + Guid.NewGuid().ToString("N")).Create(time);
        try
        {
            await backend.MigrateAsync(CancellationToken.None);
        }
        catch
        {
            await DisposeAsync(backend);
            throw;
        }
        return backend;
    }

    /// <summary>Another instance on <paramref name="backend"/>'s schema, as another process would open it.</summary>
    public Task<IConveyorBackend> CreatePeerAsync(IConveyorBackend backend, TimeProvider time) =>
        Task.FromResult(new PostgresDatabase(ConnectionString, ((PostgresBackend)backend).Schema).Create(time));

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
