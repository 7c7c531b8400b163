using Conveyor.Backends;

namespace Conveyor.Sqlite.Tests;

/// <summary>The writers' cross-process gate (docs/sqlite.md, "How it writes"): a waiting writer is let in when the
/// holder lets go, writers that both want it take turns, a wait gives up after its timeout, and closing the gate (what
/// the kernel does for a killed process) lets go of it. Two gates on one file conflict exactly as two processes' do:
/// <c>flock</c> locks belong to the open file, not to the process.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class SqliteWriterGateTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "conveyor-gate-" + Guid.NewGuid().ToString("N")[..12]);
    private readonly string _database;

    public SqliteWriterGateTests()
    {
        Directory.CreateDirectory(_root);
        _database = Path.Combine(_root, "conveyor.db");
    }

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    private SqliteWriterGate Open() => SqliteWriterGate.TryOpen(_database) ?? throw new InvalidOperationException("no gate on this platform");

    [Fact]
    public async Task A_waiting_writer_is_let_in_when_the_holder_lets_go()
    {
        using var first = Open();
        using var second = Open();
        Assert.True(first.Enter(TimeSpan.FromSeconds(5)));

        var waiting = Task.Run(() => second.Enter(TimeSpan.FromSeconds(10)));
        await Task.Delay(100);
        Assert.False(waiting.IsCompleted, "the second writer went in while the first held the gate");
        first.Exit();

        Assert.True(await waiting.WaitAsync(TimeSpan.FromSeconds(5)));
        second.Exit();
    }

    [Fact]
    public async Task Writers_that_both_want_the_gate_take_turns()
    {
        using var first = Open();
        using var second = Open();
        Assert.True(first.Enter(TimeSpan.FromSeconds(5)));
        var waiting = Task.Run(() => second.Enter(TimeSpan.FromSeconds(10)));
        await Task.Delay(100);

        // The holder lets go and asks again at once: the writer already waiting goes first.
        first.Exit();
        var again = Task.Run(() => first.Enter(TimeSpan.FromSeconds(10)));
        Assert.True(await waiting.WaitAsync(TimeSpan.FromSeconds(5)));
        await Task.Delay(100);
        Assert.False(again.IsCompleted, "the writer that just let go took the gate again before the one waiting for it");
        second.Exit();
        Assert.True(await again.WaitAsync(TimeSpan.FromSeconds(5)));
        first.Exit();
    }

    [Fact]
    public void A_wait_gives_up_after_its_timeout_and_a_later_one_gets_the_gate()
    {
        using var first = Open();
        using var second = Open();
        Assert.True(first.Enter(TimeSpan.FromSeconds(5)));

        var started = System.Diagnostics.Stopwatch.StartNew();
        Assert.False(second.Enter(TimeSpan.FromMilliseconds(200)));
        Assert.InRange(started.Elapsed, TimeSpan.FromMilliseconds(150), TimeSpan.FromSeconds(5));

        first.Exit();
        Assert.True(second.Enter(TimeSpan.FromSeconds(5)));
        second.Exit();
        // Nobody is left holding it: the first writer gets it at once.
        Assert.True(first.Enter(TimeSpan.FromSeconds(5)));
        first.Exit();
    }

    [Fact]
    public async Task Closing_the_gate_lets_go_of_it()
    {
        var first = Open();
        using var second = Open();
        Assert.True(first.Enter(TimeSpan.FromSeconds(5)));
        var waiting = Task.Run(() => second.Enter(TimeSpan.FromSeconds(10)));
        await Task.Delay(100);

        first.Dispose();

        Assert.True(await waiting.WaitAsync(TimeSpan.FromSeconds(5)));
        second.Exit();
    }

    [Fact]
    public async Task Two_backends_on_one_file_write_through_the_gate_and_lose_nothing()
    {
        var options = new SqliteBackendOptions { Path = _database };
        using var one = new SqliteBackend(options);
        using var two = new SqliteBackend(options);
        await one.MigrateAsync(CancellationToken.None);
        await two.MigrateAsync(CancellationToken.None);
        var (gate, turnstile) = SqliteWriterGate.PathsFor(Path.GetFullPath(_database));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(gate));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(turnstile));

        const int PerBackend = 400;
        async Task Enqueue(SqliteBackend backend)
        {
            for (var i = 0; i < PerBackend; i++)
            {
                await backend.Queue.EnqueueAsync([new TaskMessage { Id = Guid.CreateVersion7(), Task = "t", Queue = "default", CreatedAt = DateTimeOffset.UtcNow }], CancellationToken.None);
            }
        }
        await Task.WhenAll(Task.Run(() => Enqueue(one)), Task.Run(() => Enqueue(two)));

        var leased = new HashSet<Guid>();
        async Task Drain(SqliteBackend backend, string worker)
        {
            while (true)
            {
                var leases = await backend.Queue.FetchAsync(new FetchRequest { WorkerId = worker, Queues = [new QueueWeight("default", 1)], MaxCount = 16, LeaseDuration = TimeSpan.FromMinutes(1) }, CancellationToken.None);
                if (leases.Count == 0)
                {
                    return;
                }
                lock (leased)
                {
                    foreach (var lease in leases)
                    {
                        Assert.True(leased.Add(lease.Message.Id), $"task {lease.Message.Id} was leased twice");
                    }
                }
                await backend.Queue.CompleteAsync([.. leases.Select(l => new Completion { Lease = l.Ref, Kind = CompletionKind.Succeeded, Attempt = l.Attempt, At = DateTimeOffset.UtcNow })], CancellationToken.None);
            }
        }
        await Task.WhenAll(Task.Run(() => Drain(one, "w1")), Task.Run(() => Drain(two, "w2")));

        Assert.Equal(2 * PerBackend, leased.Count);
    }
}
