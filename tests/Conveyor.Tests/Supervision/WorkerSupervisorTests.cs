using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging.Abstractions;

namespace Conveyor.Tests.Supervision;

/// <summary>The supervisor's loop with <c>/bin/sh</c> children: restarts with and without backoff, the hand-back of the
/// leases of each child that did not say it handed them back itself, under its own id, and stops that end in time, with
/// children that ignore the stop and a hand-back that does not answer. (The process tests run it with real workers.)</summary>
public sealed class WorkerSupervisorTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("conveyor-supervisor-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private string StartsLog => Path.Combine(_folder, "starts.log");

    /// <summary>A child that notes its start (time in ms and worker id), then runs <paramref name="then"/>.</summary>
    private SupervisorSettings Shell(string then, int processes = 1) => new()
    {
        Processes = processes,
        FileName = "/bin/sh",
        Arguments = ["-c", $"echo \"$(date +%s%3N) ${ConveyorSupervisor.WorkerIdVariable} ${ConveyorSupervisor.SupervisorProcessIdVariable}\" >> '{StartsLog}'; {then}"],
        GracefulTimeout = TimeSpan.FromSeconds(10),
    };

    private List<(long AtMs, string WorkerId, string SupervisorPid)> Starts() =>
        File.Exists(StartsLog)
            ? File.ReadAllLines(StartsLog).Select(l => l.Split(' ')).Select(p => (long.Parse(p[0], CultureInfo.InvariantCulture), p[1], p[2])).ToList()
            : [];

    private static async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout, Func<string> what)
    {
        var deadline = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(deadline.Elapsed < timeout, $"timed out after {timeout} waiting for {what()}");
            await Task.Delay(20);
        }
    }

    private static WorkerSupervisor Supervisor(SupervisorSettings settings, RecordingHandBack backend) =>
        new(settings, backend.HandBackAsync, TimeProvider.System, NullLogger<WorkerSupervisor>.Instance);

    [Fact]
    public async Task A_crashing_child_is_restarted_after_a_doubling_backoff_and_each_start_gets_a_fresh_id_whose_leases_are_handed_back()
    {
        var backend = new RecordingHandBack();
        var settings = Shell("exit 3") with { InitialBackoff = TimeSpan.FromMilliseconds(200), MaxBackoff = TimeSpan.FromMilliseconds(400) };
        await using var supervisor = Supervisor(settings, backend);
        using var stop = new CancellationTokenSource();
        var run = supervisor.RunAsync(stop.Token, CancellationToken.None);

        await WaitUntilAsync(() => Starts().Count >= 4, TimeSpan.FromSeconds(20), () => $"4 starts, saw {Starts().Count}");
        await stop.CancelAsync();
        await run.WaitAsync(TimeSpan.FromSeconds(10));

        var starts = Starts();
        // Waits of 200, 400, 400 ms at least (the cap), between the starts. The starts are the children's wall-clock
        // readings, the waits .NET timers, which on Linux run on a coarse monotonic clock and may end a few milliseconds
        // early (397 ms seen in CI for a 400 ms wait): 100 ms of slack, which still tells a doubled backoff (≥ 300) from
        // an undoubled one (about 200).
        const int StartSlackMs = 100;
        Assert.InRange(starts[1].AtMs - starts[0].AtMs, 200 - StartSlackMs, 10_000);
        Assert.InRange(starts[2].AtMs - starts[1].AtMs, 400 - StartSlackMs, 10_000);
        Assert.InRange(starts[3].AtMs - starts[2].AtMs, 400 - StartSlackMs, 10_000);
        Assert.Equal(starts.Count, starts.Select(s => s.WorkerId).Distinct().Count());
        Assert.All(starts, s => Assert.Equal(Environment.ProcessId.ToString(CultureInfo.InvariantCulture), s.SupervisorPid));
        Assert.All(starts, s => Assert.Contains(s.WorkerId, backend.Abandoned));
        Assert.True(supervisor.Restarts >= 3);
    }

    [Fact]
    public async Task A_child_that_exits_to_be_recycled_is_replaced_at_once_and_its_leases_are_left_to_it()
    {
        var backend = new RecordingHandBack();
        // A crash would wait a minute before its restart; a planned exit waits for nothing.
        var settings = Shell($"exit {WorkerExitCodes.Recycled}") with { InitialBackoff = TimeSpan.FromMinutes(1) };
        await using var supervisor = Supervisor(settings, backend);
        using var stop = new CancellationTokenSource();
        var run = supervisor.RunAsync(stop.Token, CancellationToken.None);

        await WaitUntilAsync(() => Starts().Count >= 3, TimeSpan.FromSeconds(20), () => $"3 starts, saw {Starts().Count}");
        await stop.CancelAsync();
        await run.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(supervisor.Restarts >= 2);
        // 75: it handed back every lease itself, confirmed by the backend; the supervisor has nothing to do.
        Assert.Empty(backend.Abandoned);
    }

    private string EventsLog => Path.Combine(_folder, "events.log");

    /// <summary>A child that, started as the spare, notes that it waits and reads one byte from its input: the end of
    /// input (a stop) ends it with 0, a byte is its turn; then (or at once when no spare) it runs <paramref name="work"/>.</summary>
    private string SpareAware(string work) =>
        $"id=${ConveyorSupervisor.WorkerIdVariable}; " +
        $"if [ \"${SpareTurn.Variable}\" = 1 ]; then echo \"$(date +%s%3N) waits $id\" >> '{EventsLog}'; b=$(head -c 1); " +
        $"if [ -z \"$b\" ]; then echo \"$(date +%s%3N) stopped $id\" >> '{EventsLog}'; exit 0; fi; " +
        $"echo \"$(date +%s%3N) turn $id\" >> '{EventsLog}'; fi; {work}";

    private List<(long AtMs, string What, string WorkerId)> Events() =>
        File.Exists(EventsLog)
            ? File.ReadAllLines(EventsLog).Select(l => l.Split(' ')).Select(p => (long.Parse(p[0], CultureInfo.InvariantCulture), p[1], p[2])).ToList()
            : [];

    [Fact]
    public async Task A_spare_waits_without_working_takes_the_place_of_a_child_that_recycles_and_is_followed_by_another()
    {
        var backend = new RecordingHandBack();
        // Each child works 2 s and recycles; /bin/sh sends no notice here, so the first spare starts after the delay and
        // a slot takes it when its child has exited.
        var settings = Shell(SpareAware($"sleep 2; exit {WorkerExitCodes.Recycled}")) with
        {
            Spare = true,
            SpareStartDelay = TimeSpan.FromMilliseconds(200),
            InitialBackoff = TimeSpan.FromMinutes(1),
        };
        await using var supervisor = Supervisor(settings, backend);
        using var stop = new CancellationTokenSource();
        var run = supervisor.RunAsync(stop.Token, CancellationToken.None);

        await WaitUntilAsync(() => Events().Count(e => e.What == "turn") >= 2 && Events().Count(e => e.What == "waits") >= 3,
            TimeSpan.FromSeconds(30), () => $"two spares to take their turn and a third to wait: {string.Join(", ", Events())}");
        await stop.CancelAsync();
        await run.WaitAsync(TimeSpan.FromSeconds(10));

        var starts = Starts();
        var events = Events();
        // One child started as such; every other process was a spare, whose turn came when the child before it exited (a
        // turn per spare, the child before it at least 2 s old by then). Told apart by their ids, not by the order of
        // the start lines: a cold first process start can let the first spare's line come first.
        var child = Assert.Single(starts, s => !s.WorkerId.Contains(":spare.", StringComparison.Ordinal));
        var turns = events.Where(e => e.What == "turn").ToList();
        Assert.Equal(turns.Count, turns.Select(t => t.WorkerId).Distinct().Count());
        Assert.Contains(":spare.1-", turns[0].WorkerId, StringComparison.Ordinal);
        Assert.InRange(turns[0].AtMs - child.AtMs, 2000 - 100, 20_000);
        // The next spare starts once the child its predecessor replaced exited (here at once), and waits for its turn
        // until the child before it exits, 2 s later.
        Assert.Contains(":spare.2-", turns[1].WorkerId, StringComparison.Ordinal);
        Assert.InRange(turns[1].AtMs - turns[0].AtMs, 2000 - 100, 20_000);
        // The stop closed the waiting spare's input: it ended with 0, having held nothing.
        Assert.Contains(events, e => e.What == "stopped" && !turns.Any(t => t.WorkerId == e.WorkerId));
        Assert.Empty(backend.Abandoned);
    }

    [Fact]
    public async Task The_first_spare_starts_when_the_first_child_says_it_began_and_the_next_once_the_retiring_child_it_replaced_exited()
    {
        var backend = new RecordingHandBack();
        // The words a worker sends (ChildNotice), from /bin/sh: began, then after 1.5 s (time for the spare to start)
        // "recycling" (noted), then a drain of 3 s and exit 75. A spare on its turn runs until its input ends.
        var say = $"kill -USR1 ${ConveyorSupervisor.SupervisorProcessIdVariable}";
        var folder = $"${ChildNotice.FolderVariable}";
        var settings = Shell(SpareAware(
            $"if [ -n \"$b\" ]; then exec cat > /dev/null; fi; " +
            $": > \"{folder}/$id+started\"; {say}; sleep 1.5; echo \"$(date +%s%3N) retiring $id\" >> '{EventsLog}'; " +
            $": > \"{folder}/$id\"; {say}; sleep 3; exit {WorkerExitCodes.Recycled}")) with
        {
            Spare = true,
            // Only the child's word can start the spare this soon.
            SpareStartDelay = TimeSpan.FromSeconds(60),
            InitialBackoff = TimeSpan.FromMinutes(1),
        };
        await using var supervisor = Supervisor(settings, backend);
        using var stop = new CancellationTokenSource();
        var run = supervisor.RunAsync(stop.Token, CancellationToken.None);

        await WaitUntilAsync(() => Starts().Count >= 3, TimeSpan.FromSeconds(30), () => $"the child and two spares: {string.Join(", ", Starts())}");
        await stop.CancelAsync();
        await run.WaitAsync(TimeSpan.FromSeconds(10));

        var starts = Starts();
        var turns = Events().Where(e => e.What == "turn").ToList();
        var retiring = Events().Single(e => e.What == "retiring");
        Assert.InRange(starts[1].AtMs - starts[0].AtMs, 0, 10_000);
        Assert.Contains(":spare.", starts[1].WorkerId, StringComparison.Ordinal);
        // Its turn came at the child's word, not at its exit 3 s later.
        Assert.Equal(starts[0].WorkerId, retiring.WorkerId);
        Assert.Equal(starts[1].WorkerId, Assert.Single(turns).WorkerId);
        Assert.InRange(turns[0].AtMs - retiring.AtMs, 0, 2_500);
        // The next spare waited for the retired child's exit, 3 s after its word (less the clocks' slack).
        Assert.Contains(":spare.", starts[2].WorkerId, StringComparison.Ordinal);
        Assert.InRange(starts[2].AtMs - retiring.AtMs, 3000 - 100, 30_000);
        Assert.Empty(backend.Abandoned);
    }

    [Fact]
    public async Task A_spare_that_crashes_before_its_turn_is_started_again_after_the_backoff_and_has_nothing_handed_back()
    {
        var backend = new RecordingHandBack();
        // The spare exits 3 at once; the child runs until the stop.
        var script = $"id=${ConveyorSupervisor.WorkerIdVariable}; if [ \"${SpareTurn.Variable}\" = 1 ]; then exit 3; fi; exec cat > /dev/null";
        var settings = Shell(script) with
        {
            Spare = true,
            SpareStartDelay = TimeSpan.FromMilliseconds(100),
            InitialBackoff = TimeSpan.FromMilliseconds(200),
            MaxBackoff = TimeSpan.FromMilliseconds(400),
        };
        await using var supervisor = Supervisor(settings, backend);
        using var stop = new CancellationTokenSource();
        var run = supervisor.RunAsync(stop.Token, CancellationToken.None);

        await WaitUntilAsync(() => Starts().Count(s => s.WorkerId.Contains(":spare.", StringComparison.Ordinal)) >= 3, TimeSpan.FromSeconds(20),
            () => $"3 spare starts: {string.Join(", ", Starts())}");
        await stop.CancelAsync();
        await run.WaitAsync(TimeSpan.FromSeconds(10));

        var spares = Starts().Where(s => s.WorkerId.Contains(":spare.", StringComparison.Ordinal)).ToList();
        // Backoff between them (200, then 400 ms, less the timers' slack), and the child was never replaced.
        Assert.InRange(spares[1].AtMs - spares[0].AtMs, 200 - 100, 10_000);
        Assert.InRange(spares[2].AtMs - spares[1].AtMs, 400 - 100, 10_000);
        Assert.Single(Starts(), s => !s.WorkerId.Contains(":spare.", StringComparison.Ordinal));
        Assert.Equal(0, supervisor.Restarts);
        // A spare fetches nothing before its turn: there is nothing to hand back for it, nor for the child (stopped, 0).
        Assert.Empty(backend.Abandoned);
    }

    [Fact]
    public async Task A_child_that_drained_without_the_backends_confirmation_has_its_leases_handed_back_and_waits_out_the_backoff()
    {
        var backend = new RecordingHandBack();
        var settings = Shell($"exit {WorkerExitCodes.LeasesNotHandedBack}") with { InitialBackoff = TimeSpan.FromMilliseconds(300) };
        await using var supervisor = Supervisor(settings, backend);
        using var stop = new CancellationTokenSource();
        var run = supervisor.RunAsync(stop.Token, CancellationToken.None);

        await WaitUntilAsync(() => Starts().Count >= 2, TimeSpan.FromSeconds(20), () => $"2 starts, saw {Starts().Count}");
        await stop.CancelAsync();
        await run.WaitAsync(TimeSpan.FromSeconds(10));

        var starts = Starts();
        Assert.Contains(starts[0].WorkerId, backend.Abandoned);
        // Not replaced at once, as a confirmed recycle is: the backend is likely down.
        Assert.InRange(starts[1].AtMs - starts[0].AtMs, 300 - 100, 10_000);
    }

    [Fact]
    public async Task A_slow_hand_back_does_not_hold_up_the_replacement_and_the_stop_waits_for_it()
    {
        // Each hand-back takes 2 s; the replacement of a crashed child comes after the 100 ms backoff all the same.
        var backend = new RecordingHandBack(delay: TimeSpan.FromSeconds(2));
        var settings = Shell("exit 3") with { InitialBackoff = TimeSpan.FromMilliseconds(100), MaxBackoff = TimeSpan.FromMilliseconds(100) };
        await using var supervisor = Supervisor(settings, backend);
        using var stop = new CancellationTokenSource();
        var run = supervisor.RunAsync(stop.Token, CancellationToken.None);

        await WaitUntilAsync(() => Starts().Count >= 3, TimeSpan.FromSeconds(20), () => $"3 starts, saw {Starts().Count}");
        var starts = Starts();
        Assert.InRange(starts[2].AtMs - starts[0].AtMs, 0, 1_900);
        await stop.CancelAsync();
        await run.WaitAsync(TimeSpan.FromSeconds(10));
        // Every child's hand-back ended before the supervisor returned.
        Assert.All(Starts(), s => Assert.Contains(s.WorkerId, backend.Finished));
    }

    [Theory]
    // 0: drained, and the backend confirmed the hand-back of its leases: nothing left for the supervisor.
    [InlineData(0, false)]
    // Drained without that confirmation: the supervisor hands them back.
    [InlineData(WorkerExitCodes.LeasesNotHandedBack, true)]
    [InlineData(1, true)]
    public async Task A_stop_closes_the_childrens_input_and_they_drain(int exitCode, bool handedBackBySupervisor)
    {
        var backend = new RecordingHandBack();
        // Reads its input to the end, as a supervised worker watches it, then exits.
        await using var supervisor = Supervisor(Shell($"cat > /dev/null; exit {exitCode}", processes: 2), backend);
        using var stop = new CancellationTokenSource();
        var run = supervisor.RunAsync(stop.Token, CancellationToken.None);
        await WaitUntilAsync(() => supervisor.ChildProcessIds.Count == 2 && Starts().Count == 2, TimeSpan.FromSeconds(20), () => "2 children");

        var clock = Stopwatch.StartNew();
        await stop.CancelAsync();
        await run.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"the stop took {clock.Elapsed}");
        Assert.Equal(0, supervisor.Restarts);
        string[] expected = handedBackBySupervisor ? [.. Starts().Select(s => s.WorkerId).Order(StringComparer.Ordinal)] : [];
        Assert.Equal(expected, backend.Abandoned.Order(StringComparer.Ordinal).ToArray());
    }

    [Fact]
    public async Task Children_that_ignore_the_stop_are_killed_after_the_graceful_timeout_even_with_the_backend_not_answering()
    {
        // The backend never answers: each hand-back gives up after its timeout.
        var backend = new RecordingHandBack(hang: true);
        var settings = Shell("exec sleep 600", processes: 2) with
        {
            GracefulTimeout = TimeSpan.FromMilliseconds(500),
            AbandonTimeout = TimeSpan.FromMilliseconds(300),
        };
        await using var supervisor = Supervisor(settings, backend);
        using var stop = new CancellationTokenSource();
        var run = supervisor.RunAsync(stop.Token, CancellationToken.None);
        await WaitUntilAsync(() => supervisor.ChildProcessIds.Count == 2 && Starts().Count == 2, TimeSpan.FromSeconds(20), () => "2 children");
        var children = supervisor.ChildProcessIds.Values.ToList();

        var clock = Stopwatch.StartNew();
        await stop.CancelAsync();
        await run.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(450), TimeSpan.FromSeconds(5));
        Assert.All(children, pid => Assert.False(IsRunning(pid), $"child {pid} still runs"));
        Assert.Equal(2, backend.Abandoned.Count);
    }

    [Fact]
    public async Task Stop_now_kills_the_children_at_once()
    {
        var backend = new RecordingHandBack();
        var settings = Shell("exec sleep 600") with { GracefulTimeout = TimeSpan.FromMinutes(5) };
        await using var supervisor = Supervisor(settings, backend);
        using var stop = new CancellationTokenSource();
        using var stopNow = new CancellationTokenSource();
        var run = supervisor.RunAsync(stop.Token, stopNow.Token);
        await WaitUntilAsync(() => supervisor.ChildProcessIds.Count == 1 && Starts().Count == 1, TimeSpan.FromSeconds(20), () => "a child");

        var clock = Stopwatch.StartNew();
        await stop.CancelAsync();
        await stopNow.CancelAsync();
        await run.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"the stop took {clock.Elapsed}");
        Assert.Contains(Starts()[0].WorkerId, backend.Abandoned);
    }

    private static bool IsRunning(int processId)
    {
        try
        {
            using var process = Process.GetProcessById(processId);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}

/// <summary>A hand-back that records the workers it was asked for (answering 0 leases after <c>delay</c>, or never).</summary>
public sealed class RecordingHandBack(bool hang = false, TimeSpan? delay = null)
{
    /// <summary>The workers whose hand-back was asked for.</summary>
    public ConcurrentBag<string> Abandoned { get; } = [];

    /// <summary>The workers whose hand-back ended.</summary>
    public ConcurrentBag<string> Finished { get; } = [];

    internal async Task<int> HandBackAsync(string workerId, CancellationToken cancellationToken)
    {
        Abandoned.Add(workerId);
        if (hang)
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
        }
        if (delay is { } wait)
        {
            await Task.Delay(wait, cancellationToken);
        }
        Finished.Add(workerId);
        return 0;
    }
}
