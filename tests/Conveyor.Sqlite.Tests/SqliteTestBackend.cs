using Conveyor.Backends;
using Conveyor.Conformance;

namespace Conveyor.Sqlite.Tests;

/// <summary>Builds each test's SQLite backend on a fresh file of its own and deletes it afterwards.</summary>
public sealed class SqliteTestBackend : IConformanceBackendFactory
{
    private static readonly string Folder = Path.Combine(Path.GetTempPath(), "conveyor-sqlite-tests");

    public async Task<IConveyorBackend> CreateAsync(TimeProvider time)
    {
        var path = Path.Combine(Folder, Guid.NewGuid().ToString("N") + ".db");
        var backend = new SqliteBackend(new SqliteBackendOptions { Path = path }, time);
        try
        {
            await backend.MigrateAsync(CancellationToken.None);
        }
        catch
        {
            Dispose(backend);
            throw;
        }
        return backend;
    }

    /// <summary>Another instance on <paramref name="backend"/>'s file, as another process would open it.</summary>
    public Task<IConveyorBackend> CreatePeerAsync(IConveyorBackend backend, TimeProvider time) =>
        Task.FromResult<IConveyorBackend>(new SqliteBackend(new SqliteBackendOptions { Path = ((SqliteBackend)backend).DatabasePath }, time));

    public ValueTask DisposeAsync(IConveyorBackend backend)
    {
        Dispose((SqliteBackend)backend);
        return ValueTask.CompletedTask;
    }

    private static void Dispose(SqliteBackend backend)
    {
        backend.Dispose();
        foreach (var suffix in new[] { "", "-wal", "-shm", "-journal" })
        {
            File.Delete(backend.DatabasePath + suffix);
        }
        // The notifier's folder of sockets, once every instance on the file is gone.
        if (Directory.Exists(backend.DatabasePath + ".notify"))
        {
            Directory.Delete(backend.DatabasePath + ".notify", recursive: true);
        }
    }
}
