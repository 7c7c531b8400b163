using System.Diagnostics;
using Conveyor.Backends;

namespace Conveyor.Sqlite.Tests;

/// <summary>SQLite-only behaviour: several processes (here, backend instances) sharing one file.</summary>
public sealed class SqliteSharedFileTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "conveyor-shared-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public async Task Waiting_fetch_finds_a_task_enqueued_by_another_instance_on_the_same_file()
    {
        var path = Path.Combine(_folder, "shared.db");
        using var consumer = new SqliteBackend(new SqliteBackendOptions { Path = path });
        using var producer = new SqliteBackend(new SqliteBackendOptions { Path = path });
        await consumer.MigrateAsync(CancellationToken.None);
        await producer.MigrateAsync(CancellationToken.None);

        var stopwatch = Stopwatch.StartNew();
        var fetch = consumer.FetchAsync(new FetchRequest
        {
            WorkerId = "w1",
            Queues = [new QueueWeight("default")],
            MaxCount = 10,
            LeaseDuration = TimeSpan.FromSeconds(30),
            MaxWait = TimeSpan.FromSeconds(20),
        }, CancellationToken.None);
        await Task.Delay(300);
        Assert.False(fetch.IsCompleted);
        var now = DateTimeOffset.UtcNow;
        var id = Guid.CreateVersion7();
        await producer.EnqueueAsync([new TaskMessage { Id = id, Task = "t", CreatedAt = now }], CancellationToken.None);

        var leases = await fetch;
        stopwatch.Stop();
        Assert.Equal(id, Assert.Single(leases).Message.Id);
        // Found by the poll (100 ms by default), far before the 20 s wait ends.
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(10), $"took {stopwatch.Elapsed}");
    }
}
