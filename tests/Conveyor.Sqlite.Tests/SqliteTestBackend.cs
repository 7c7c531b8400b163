using Conveyor.Backends;
using Conveyor.Conformance;

namespace Conveyor.Sqlite.Tests;

/// <summary>Builds each test's SQLite backend on a fresh file of its own and deletes it afterwards.</summary>
public sealed class SqliteTestBackend : IConformanceBackendFactory
{
    private static readonly string Folder = Path.Combine(Path.GetTempPath(), "conveyor-sqlite-tests");

    public Task<IConveyorBackend> CreateAsync(TimeProvider time) =>
        this.MigrateOrDisposeAsync(new SqliteDatabase(Path.Combine(Folder, Guid.NewGuid().ToString("N") + ".db")).Create(time));

    /// <summary>Another instance on <paramref name="backend"/>'s file, as another process would open it.</summary>
    public Task<IConveyorBackend> CreatePeerAsync(IConveyorBackend backend, TimeProvider time) =>
        Task.FromResult(new SqliteDatabase(((SqliteBackend)backend).DatabasePath).Create(time));

    public async ValueTask DisposeAsync(IConveyorBackend backend) => await DisposeAsync((SqliteBackend)backend);

    private static async Task DisposeAsync(SqliteBackend backend)
    {
        backend.Dispose();
        // The file, and the notifier's folder of sockets, once every instance on the file is gone.
        await new SqliteDatabase(backend.DatabasePath).DropAsync(CancellationToken.None);
    }
}
