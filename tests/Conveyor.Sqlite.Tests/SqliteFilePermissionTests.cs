using Conveyor.Backends;

namespace Conveyor.Sqlite.Tests;

/// <summary>A database Conveyor creates is readable by its user alone: folder 0700, database, WAL and shared-memory
/// files 0600, whatever the process's umask.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class SqliteFilePermissionTests : IDisposable
{
    private const UnixFileMode OwnerOnlyFile = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private readonly string _root = Path.Combine(Path.GetTempPath(), "conveyor-perm-" + Guid.NewGuid().ToString("N")[..12]);

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public async Task A_new_database_and_its_folder_are_private_to_the_user()
    {
        Directory.CreateDirectory(_root);
        var folder = Path.Combine(_root, "data");
        var path = Path.Combine(folder, "conveyor.db");
        using (var backend = new SqliteBackend(new SqliteBackendOptions { Path = path }))
        {
            await backend.MigrateAsync(CancellationToken.None);
            await backend.EnqueueAsync([new TaskMessage { Id = Guid.NewGuid(), Task = "secret", Queue = "default", CreatedAt = DateTimeOffset.UtcNow }], CancellationToken.None);

            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(folder));
            Assert.Equal(OwnerOnlyFile, File.GetUnixFileMode(path));
            Assert.True(File.Exists(path + "-wal"), "the database runs in WAL mode");
            Assert.Equal(OwnerOnlyFile, File.GetUnixFileMode(path + "-wal"));
            Assert.Equal(OwnerOnlyFile, File.GetUnixFileMode(path + "-shm"));
        }
    }

    [Fact]
    public void An_existing_database_keeps_the_permissions_its_owner_gave_it()
    {
        Directory.CreateDirectory(_root);
        var path = Path.Combine(_root, "mine.db");
        File.WriteAllBytes(path, []);
        File.SetUnixFileMode(path, OwnerOnlyFile | UnixFileMode.GroupRead);

        using var backend = new SqliteBackend(new SqliteBackendOptions { Path = path });

        Assert.Equal(OwnerOnlyFile | UnixFileMode.GroupRead, File.GetUnixFileMode(path));
    }
}
