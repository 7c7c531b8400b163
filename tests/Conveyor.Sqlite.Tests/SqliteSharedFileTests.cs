using System.Diagnostics;
using System.Net.Sockets;
using Conveyor.Backends;

namespace Conveyor.Sqlite.Tests;

/// <summary>SQLite-only behaviour: several processes (here, backend instances) sharing one file, and the datagram
/// sockets that carry notifications between them (none on Windows, where notifications stay in-process).</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class SqliteSharedFileTests : IDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(5);
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "conveyor-shared-" + Guid.NewGuid().ToString("N")[..12]);

    public void Dispose()
    {
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { }
    }

    private static async Task<SqliteBackend> OpenAsync(string path)
    {
        var backend = new SqliteBackend(new SqliteBackendOptions { Path = path });
        await backend.MigrateAsync(CancellationToken.None);
        return backend;
    }

    private static FetchRequest Request => new()
    {
        WorkerId = "w1",
        Queues = [new QueueWeight("default")],
        MaxCount = 10,
        LeaseDuration = TimeSpan.FromSeconds(30),
    };

    [Fact]
    public async Task An_enqueue_through_one_instance_notifies_a_subscriber_of_another_which_then_fetches_the_task()
    {
        var path = Path.Combine(_folder, "shared.db");
        using var consumer = await OpenAsync(path);
        using var producer = await OpenAsync(path);
        var ready = new TaskCompletionSource<Notification>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var subscription = await consumer.Notifier.SubscribeAsync(NotifierChannels.Ready, n => ready.TrySetResult(n), CancellationToken.None);
        Assert.Empty(await consumer.FetchAsync(Request, CancellationToken.None));

        var id = Guid.CreateVersion7();
        var sent = Stopwatch.StartNew();
        await producer.EnqueueAsync([new TaskMessage { Id = id, Task = "t", Queue = "default", CreatedAt = DateTimeOffset.UtcNow }], CancellationToken.None);
        var notification = await ready.Task.WaitAsync(Bound);
        sent.Stop();

        Assert.Equal(new Notification(NotifierChannels.Ready, "default"), notification);
        Assert.Equal(id, Assert.Single(await consumer.FetchAsync(Request, CancellationToken.None)).Message.Id);
        Assert.True(consumer.Capabilities.CrossProcessNotifications);
    }

    [Fact]
    public async Task The_sockets_are_in_a_folder_beside_the_database_that_only_its_owner_can_open()
    {
        var path = Path.Combine(_folder, "private.db");
        using var backend = await OpenAsync(path);

        await using var subscription = await backend.Notifier.SubscribeAsync("anything", _ => { }, CancellationToken.None);

        var folder = path + ".notify";
        Assert.Single(Directory.GetFiles(folder, "*.sock"));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(folder));
        backend.Dispose();
        Assert.Empty(Directory.GetFiles(folder, "*.sock"));
    }

    [Fact]
    public async Task A_socket_whose_owner_is_gone_is_removed_by_the_next_publish()
    {
        var path = Path.Combine(_folder, "stale.db");
        using var publisher = await OpenAsync(path);
        // A socket file left behind by a process that died: bound, then closed without removing the file (.NET removes
        // the file it bound when the socket closes, so the file is moved away first).
        Directory.CreateDirectory(path + ".notify");
        var stale = Path.Combine(path + ".notify", "0000000000000000.sock");
        using (var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified))
        {
            socket.Bind(new UnixDomainSocketEndPoint(stale + ".bound"));
            File.Move(stale + ".bound", stale);
        }
        Assert.True(File.Exists(stale));

        await publisher.Notifier.PublishAsync("anything", "x", CancellationToken.None);

        Assert.False(File.Exists(stale));
    }

    [Fact]
    public async Task A_peer_that_did_not_read_hears_that_it_missed_notifications_before_the_next_one()
    {
        var path = Path.Combine(_folder, "slow.db");
        using var publisher = await OpenAsync(path);
        Directory.CreateDirectory(path + ".notify");
        // A peer that does not read, until the test reads for it.
        using var slow = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        slow.Bind(new UnixDomainSocketEndPoint(Path.Combine(path + ".notify", "1111111111111111.sock")));

        // More than its queue holds (net.unix.max_dgram_qlen, 10 by default; up to 512 elsewhere): the rest are dropped,
        // each publish waiting at most SqliteNotifier.BlockingSendTimeout for room.
        var elapsed = Stopwatch.StartNew();
        for (var i = 0; i < 600; i++)
        {
            await publisher.Notifier.PublishAsync("anything", "n" + i, CancellationToken.None);
        }
        elapsed.Stop();
        var queued = Drain(slow);
        Assert.NotEmpty(queued);
        Assert.True(queued.Count < 600, $"all {queued.Count} datagrams were queued; none was dropped");
        Assert.True(elapsed.Elapsed < TimeSpan.FromSeconds(5), $"publishing to a peer that does not read took {elapsed.Elapsed}");

        await publisher.Notifier.PublishAsync("anything", "after", CancellationToken.None);

        var next = Drain(slow);
        Assert.Equal(2, next.Count);
        Assert.Equal((byte)'M', next[0][0]);
        Assert.EndsWith("after", System.Text.Encoding.UTF8.GetString(next[1]), StringComparison.Ordinal);
    }

    private static List<byte[]> Drain(Socket socket)
    {
        var received = new List<byte[]>();
        var buffer = new byte[16384];
        while (socket.Available > 0)
        {
            var length = socket.Receive(buffer);
            received.Add(buffer[..length]);
        }
        return received;
    }
}
