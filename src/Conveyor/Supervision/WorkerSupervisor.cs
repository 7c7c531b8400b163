using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.IO.Pipes;
using System.Runtime.InteropServices;
using Conveyor.Backends;
using Microsoft.Extensions.Logging;

namespace Conveyor;

/// <summary>What a <see cref="WorkerSupervisor"/> runs and how it restarts.</summary>
internal sealed record SupervisorSettings
{
    /// <summary>Worker processes kept running.</summary>
    public required int Processes { get; init; }
    /// <summary>The program each child runs (usually this process's own, see <see cref="ConveyorSupervisor.CurrentCommand"/>).</summary>
    public required string FileName { get; init; }
    /// <summary>Its arguments.</summary>
    public required IReadOnlyList<string> Arguments { get; init; }
    /// <summary>How long children get to drain after they are asked to stop, before they are killed.</summary>
    public required TimeSpan GracefulTimeout { get; init; }
    /// <summary>First delay before restarting a child that crashed; doubled for each crash in a row.</summary>
    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromSeconds(1);
    /// <summary>Longest delay before a restart.</summary>
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>A child that stayed up this long crashed "once", not in a loop: the backoff starts over.</summary>
    public TimeSpan ResetBackoffAfter { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>Keep a spare child started and waiting (<see cref="SpareTurn"/>), which takes the place of the next child
    /// that recycles or exits.</summary>
    public bool Spare { get; init; }
    /// <summary>The first spare starts once every first child's worker began (so as not to slow their start), or this long
    /// after the start at the latest.</summary>
    public TimeSpan SpareStartDelay { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>Longest wait for the hand-back of an exited child's leases (the backend may be down; a hand-back process
    /// has to start first).</summary>
    public TimeSpan AbandonTimeout { get; init; } = TimeSpan.FromSeconds(5);
}

/// <summary>Hands back the leases (and concurrency slots) of the worker <c>workerId</c>, whose process exited without
/// handing them back itself, before <c>cancellationToken</c>; returns how many leases ended, or throws.</summary>
/// <param name="workerId">The exited child's worker id.</param>
/// <param name="cancellationToken">Cancelled at <see cref="SupervisorSettings.AbandonTimeout"/>.</param>
internal delegate Task<int> HandBackLeases(string workerId, CancellationToken cancellationToken);

/// <summary>
/// Runs <see cref="SupervisorSettings.Processes"/> child worker processes and keeps them running: a child that exits,
/// is killed or crashes is replaced, at once when it exited as planned (<see cref="WorkerExitCodes.IsPlanned"/>), else
/// after a backoff (1 s doubling to 30 s, starting over once a child stayed up 30 s). A child that exited with 0 or
/// <see cref="WorkerExitCodes.Recycled"/> handed back every lease it held itself, confirmed by the backend
/// (<see cref="WorkerExitCodes.HandedBackItsLeases"/>); after any other exit the supervisor has the leases it held ended
/// (<see cref="HandBackLeases"/>: <see cref="IQueueBackend.AbandonLeasesAsync"/>, in this process or in a hand-back
/// process), so that its tasks come back at once instead of after a lease. Each child gets a fresh worker id for that.
/// The hand-back runs beside the restart's wait: a replacement does not wait for it, and its line is logged when it ends.
/// </summary>
/// <remarks>
/// Children are told to stop by closing their standard input (<see cref="ConveyorSupervisor.IsChildProcess"/>): a
/// signal would not do, because a service manager or a terminal signals the whole process group, and a child would
/// take the supervisor's forwarded copy for a second, "stop at once" signal. A child whose supervisor dies sees the same
/// end of input and drains. Only the supervisor decides that a stop is immediate: it kills its children. The same input
/// carries the one thing a supervisor writes: a byte that hands a spare child (<see cref="SupervisorSettings.Spare"/>,
/// <see cref="SpareTurn"/>) the place of a child that recycled or exited.
/// </remarks>
internal sealed partial class WorkerSupervisor(
    SupervisorSettings settings,
    HandBackLeases handBack,
    TimeProvider time,
    ILogger<WorkerSupervisor> logger) : IAsyncDisposable
{
    private readonly object _gate = new();
    private readonly ConcurrentDictionary<int, Child> _children = new();
    // Children that said they recycle and were replaced at once: they finish what they run and exit beside their
    // replacement (ChildNotice), by worker id.
    private readonly ConcurrentDictionary<string, Child> _retired = new(StringComparer.Ordinal);
    private ChildNotice? _notice;
    // The spare (SupervisorSettings.Spare) while it waits, and what its loop learns when a slot takes it: the exit of
    // the child it replaces, after which the next spare starts.
    private Child? _spare;
    private TaskCompletionSource<Task>? _spareTaken;
    // Hand-backs (and their log lines) still under way: waited for before the supervisor returns.
    private readonly ConcurrentDictionary<Task, byte> _handingBack = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly string _idPrefix = $"{Environment.MachineName}:{Environment.ProcessId}";
    private int _restarts;

    private sealed record Child(int Slot, string WorkerId, Process Process, int ProcessId, long StartedAt)
    {
        public Task Exited { get; } = Process.WaitForExitAsync(CancellationToken.None);

        /// <summary>How long it waited as the spare before it took a slot (its uptime counts from then).</summary>
        public TimeSpan? WaitedAsSpare { get; init; }
    }

    /// <summary>Children restarted since start (planned or not).</summary>
    public int Restarts => Volatile.Read(ref _restarts);

    /// <summary>The process ids of the children running now, by slot.</summary>
    public IReadOnlyDictionary<int, int> ChildProcessIds => _children.ToDictionary(c => c.Key, c => c.Value.ProcessId);

    /// <summary>Runs the children until <paramref name="stop"/> (drain: they finish what they run, up to
    /// <see cref="SupervisorSettings.GracefulTimeout"/>) or <paramref name="stopNow"/> (kill them at once). Either way every
    /// child's leases are handed back (by the child, or by the supervisor within
    /// <see cref="SupervisorSettings.AbandonTimeout"/>) before it returns.</summary>
    public async Task RunAsync(CancellationToken stop, CancellationToken stopNow)
    {
        LogStarting(Environment.ProcessId, settings.Processes, settings.FileName + " " + string.Join(' ', settings.Arguments));
        _notice = ChildNotice.TryOpen();
        try
        {
            await RunSlotsAsync(stop, stopNow).ConfigureAwait(false);
        }
        finally
        {
            _notice?.Dispose();
        }
    }

    private async Task RunSlotsAsync(CancellationToken stop, CancellationToken stopNow)
    {
        // Each slot's first child says when its worker began (or it exits, or could not start): the spare starts then.
        var firstStarted = Enumerable.Range(0, settings.Processes).Select(_ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).ToArray();
        var slots = Enumerable.Range(1, settings.Processes).Select(slot => Task.Run(() => RunSlotAsync(slot, firstStarted[slot - 1]), CancellationToken.None))
            .Append(settings.Spare ? Task.Run(() => RunSpareAsync(Task.WhenAll(firstStarted.Select(s => s.Task))), CancellationToken.None) : Task.CompletedTask)
            .ToArray();
        var slotsEnded = Task.WhenAll(slots);
        try
        {
            await Task.WhenAny(slotsEnded, Task.Delay(Timeout.Infinite, stop)).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        BeginStop();
        // No child is retired once stopping began (RunSlotAsync): the retired ones are all known now.
        var all = Task.WhenAll(_retired.Values.Select(c => c.Exited).Append(slotsEnded));
        if (!all.IsCompleted)
        {
            if (!stopNow.IsCancellationRequested)
            {
                LogDraining(Running(), settings.GracefulTimeout);
                var limit = Task.Delay(settings.GracefulTimeout, time, stopNow);
                await Task.WhenAny(all, limit).ConfigureAwait(false);
                if (!all.IsCompleted && Running() > 0)
                {
                    LogKilling(Running(), stopNow.IsCancellationRequested ? "a second signal asked to stop at once" : $"they did not stop within {settings.GracefulTimeout}");
                }
            }
            else
            {
                LogKilling(Running(), "asked to stop at once");
            }
            KillAll();
            await all.ConfigureAwait(false);
        }
        // The hand-backs of children that exited earlier and are still under way (each ends by its timeout).
        await Task.WhenAll(_handingBack.Keys).ConfigureAwait(false);
        LogStopped(Restarts);
    }

    /// <summary>Children, retired children and the spare still running.</summary>
    private int Running()
    {
        lock (_gate)
        {
            return _children.Count + _retired.Count + (_spare is null ? 0 : 1);
        }
    }

    private void BeginStop()
    {
        lock (_gate)
        {
            if (_stopping.IsCancellationRequested)
            {
                return;
            }
            _stopping.Cancel();
            foreach (var child in _children.Values.Concat(_retired.Values))
            {
                AskToStop(child);
            }
            if (_spare is { } spare)
            {
                AskToStop(spare);
            }
        }
    }

    private void KillAll()
    {
        Child?[] spare;
        lock (_gate)
        {
            spare = [_spare];
        }
        foreach (var child in _children.Values.Concat(_retired.Values).Concat(spare.OfType<Child>()))
        {
            try
            {
                child.Process.Kill();
            }
            catch (Exception ex) when (ex is InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                // It exited meanwhile.
            }
        }
    }

    private static void AskToStop(Child child)
    {
        try
        {
            child.Process.StandardInput.Close();
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException or ObjectDisposedException)
        {
            // It exited meanwhile.
        }
    }

    private async Task RunSlotAsync(int slot, TaskCompletionSource firstStarted)
    {
        var backoff = settings.InitialBackoff;
        var generation = 0;
        // The exit of this slot's last child: a spare that takes its place is followed by the next spare once it is over.
        var previousExit = Task.CompletedTask;
        while (true)
        {
            Child? child;
            bool tookSpare;
            lock (_gate)
            {
                if (_stopping.IsCancellationRequested)
                {
                    return;
                }
                // A spare waiting takes the place: it started already (after a crash too, once the backoff is over).
                child = TakeSpare(slot, previousExit);
                tookSpare = child is not null;
                if (!tookSpare)
                {
                    generation++;
                    var workerId = $"{_idPrefix}:{slot}.{generation}-{Guid.NewGuid().ToString("N")[..6]}";
                    // Waited for before the child can say it: a word that came first would find no one to tell.
                    _ = _notice?.Retiring(workerId);
                    if (!firstStarted.Task.IsCompleted)
                    {
                        _ = _notice?.Started(workerId);
                    }
                    try
                    {
                        var process = Start(workerId, spare: false);
                        child = new Child(slot, workerId, process, process.Id, Stopwatch.GetTimestamp());
                    }
                    catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or InvalidOperationException or IOException)
                    {
                        _notice?.Forget(workerId);
                        LogStartFailed(ex, slot);
                        firstStarted.TrySetResult();
                    }
                }
                if (child is not null)
                {
                    _children[slot] = child;
                }
            }
            if (child is null)
            {
                if (!await DelayAsync(backoff).ConfigureAwait(false))
                {
                    return;
                }
                backoff = Next(backoff);
                continue;
            }
            if (tookSpare)
            {
                LogSpareTookPlace(slot, child.ProcessId, child.WorkerId, FormatUptime(child.WaitedAsSpare ?? TimeSpan.Zero));
            }
            else
            {
                LogChildStarted(slot, child.ProcessId, child.WorkerId);
            }
            previousExit = child.Exited;
            if (!firstStarted.Task.IsCompleted)
            {
                _ = SignalStartedAsync(child, firstStarted);
            }

            if (_notice?.Retiring(child.WorkerId) is { } retiring)
            {
                await Task.WhenAny(child.Exited, retiring).ConfigureAwait(false);
                lock (_gate)
                {
                    // One retired child a slot at a time: a slot whose last retired child still drains waits for this one's
                    // exit as before, so that children that recycle at once (a memory limit under a fresh process's
                    // size) or never end their drain cannot pile up.
                    if (!child.Exited.IsCompleted && !_stopping.IsCancellationRequested && !_retired.Values.Any(c => c.Slot == slot))
                    {
                        // It recycles: it stopped fetching and drains. Its replacement starts now, beside it.
                        _children.TryRemove(new KeyValuePair<int, Child>(slot, child));
                        _retired[child.WorkerId] = child;
                    }
                }
                if (_retired.ContainsKey(child.WorkerId))
                {
                    LogChildRetiring(slot, child.ProcessId, child.WorkerId);
                    Track(EndRetiredAsync(child, Interlocked.Increment(ref _restarts)));
                    backoff = settings.InitialBackoff;
                    continue;
                }
            }
            await child.Exited.ConfigureAwait(false);
            _notice?.Forget(child.WorkerId);
            var exitCode = child.Process.ExitCode;
            var uptime = Stopwatch.GetElapsedTime(child.StartedAt);
            _children.TryRemove(new KeyValuePair<int, Child>(slot, child));
            child.Process.Dispose();
            // Under way from now, beside the restart's wait; done already when the child handed back its leases itself.
            var handedBack = HandBackAsync(child.WorkerId, exitCode);
            var how = DescribeExit(exitCode);
            var upFor = FormatUptime(uptime);
            if (_stopping.IsCancellationRequested)
            {
                LogChildStopped(slot, child.ProcessId, child.WorkerId, how, await handedBack.ConfigureAwait(false));
                return;
            }
            var restarts = Interlocked.Increment(ref _restarts);
            if (WorkerExitCodes.IsPlanned(exitCode))
            {
                Track(LogAfterAsync(handedBack, result => LogChildReplaced(slot, child.ProcessId, child.WorkerId, how, upFor, result, restarts)));
                backoff = settings.InitialBackoff;
                continue;
            }
            if (uptime >= settings.ResetBackoffAfter)
            {
                backoff = settings.InitialBackoff;
            }
            var delay = backoff;
            Track(LogAfterAsync(handedBack, result => LogChildCrashed(slot, child.ProcessId, child.WorkerId, how, upFor, result, FormatUptime(delay), restarts)));
            if (!await DelayAsync(delay).ConfigureAwait(false))
            {
                return;
            }
            backoff = Next(backoff);
        }
    }

    /// <summary>Completes <paramref name="started"/> when <paramref name="child"/> says its worker began, or exits; without
    /// notices, never (the spare then waits out <see cref="SupervisorSettings.SpareStartDelay"/>).</summary>
    private async Task SignalStartedAsync(Child child, TaskCompletionSource started)
    {
        if (_notice is { } notice)
        {
            await Task.WhenAny(notice.Started(child.WorkerId), child.Exited).ConfigureAwait(false);
            started.TrySetResult();
        }
    }

    /// <summary>Hands the waiting spare, if there is one, the place of <paramref name="slot"/>: it is told to begin (a byte
    /// on its standard input), and the spare's loop starts the next spare once <paramref name="previousExit"/> is over,
    /// not beside this one's start and the old child's drain. Null when there is none, or it could not be told. Under
    /// <see cref="_gate"/>.</summary>
    private Child? TakeSpare(int slot, Task previousExit)
    {
        if (_spare is not { } spare || spare.Exited.IsCompleted)
        {
            return null;
        }
        if (!TryWriteTurn(spare.Process))
        {
            // It is exiting: its loop sees that and starts another.
            return null;
        }
        _spare = null;
        _spareTaken!.TrySetResult(previousExit);
        // Its uptime, which resets a crash backoff, counts from its turn: not the time it waited.
        var now = Stopwatch.GetTimestamp();
        return spare with { Slot = slot, StartedAt = now, WaitedAsSpare = Stopwatch.GetElapsedTime(spare.StartedAt, now) };
    }

    /// <summary>Writes one byte on <paramref name="process"/>'s standard input. With write(2) on Unix: a
    /// <see cref="PipeStream"/>'s own writes go through System.Net.Sockets there, which with what it loads would stay in
    /// the lean supervisor for the rest of its life (HandBackProcess reads with read(2) for the same reason).</summary>
    private static bool TryWriteTurn(Process process)
    {
        try
        {
            if (!OperatingSystem.IsWindows() && process.StandardInput.BaseStream is PipeStream { SafePipeHandle: var pipe })
            {
                var added = false;
                try
                {
                    pipe.DangerousAddRef(ref added);
                    var descriptor = (int)pipe.DangerousGetHandle();
                    byte[] turn = [(byte)'1'];
                    nint written;
                    do
                    {
                        written = NativeMethods.Write(descriptor, turn, 1);
                    }
                    while (written < 0 && Marshal.GetLastPInvokeError() == EINTR);
                    return written == 1;
                }
                finally
                {
                    if (added)
                    {
                        pipe.DangerousRelease();
                    }
                }
            }
            process.StandardInput.Write('1');
            process.StandardInput.Flush();
            return true;
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException or ObjectDisposedException)
        {
            return false;
        }
    }

    private const int EINTR = 4;

    private static class NativeMethods
    {
        // write(2): a closed pipe answers EPIPE (the runtime ignores SIGPIPE).
        [DllImport("libc", EntryPoint = "write", SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern nint Write(int descriptor, byte[] buffer, nint count);
    }

    /// <summary>Keeps a spare child started and waiting (<see cref="SupervisorSettings.Spare"/>): the first one once the
    /// first children's workers began (or <see cref="SupervisorSettings.SpareStartDelay"/>), the next one each time a slot took it, once
    /// the child it replaced has exited. A spare that exits before its turn held no task lease (it never fetched); it is started
    /// again after the crash backoff.</summary>
    private async Task RunSpareAsync(Task firstChildrenStarted)
    {
        // WhenAny does not throw: the delay ends cancelled at a stop.
        await Task.WhenAny(firstChildrenStarted, Task.Delay(settings.SpareStartDelay, time, _stopping.Token)).ConfigureAwait(false);
        if (_stopping.IsCancellationRequested)
        {
            return;
        }
        var backoff = settings.InitialBackoff;
        var generation = 0;
        while (true)
        {
            Child? spare = null;
            var taken = new TaskCompletionSource<Task>(TaskCreationOptions.RunContinuationsAsynchronously);
            lock (_gate)
            {
                if (_stopping.IsCancellationRequested)
                {
                    return;
                }
                generation++;
                var workerId = $"{_idPrefix}:spare.{generation}-{Guid.NewGuid().ToString("N")[..6]}";
                // Its slot waits for its recycle notice once it takes a place.
                _ = _notice?.Retiring(workerId);
                try
                {
                    var process = Start(workerId, spare: true);
                    spare = new Child(0, workerId, process, process.Id, Stopwatch.GetTimestamp());
                    _spare = spare;
                    _spareTaken = taken;
                }
                catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or InvalidOperationException or IOException)
                {
                    _notice?.Forget(workerId);
                    LogSpareStartFailed(ex);
                }
            }
            if (spare is null)
            {
                if (!await DelayAsync(backoff).ConfigureAwait(false))
                {
                    return;
                }
                backoff = Next(backoff);
                continue;
            }
            LogSpareStarted(spare.ProcessId, spare.WorkerId);
            await Task.WhenAny(spare.Exited, taken.Task).ConfigureAwait(false);
            bool wasTaken;
            lock (_gate)
            {
                wasTaken = taken.Task.IsCompleted;
                if (!wasTaken)
                {
                    _spare = null;
                    _spareTaken = null;
                }
            }
            if (wasTaken)
            {
                backoff = settings.InitialBackoff;
                var replacedExit = await taken.Task.ConfigureAwait(false);
                try
                {
                    // Not WhenAny with an endless delay: that would leave a registration on the token at every turn.
                    await replacedExit.WaitAsync(_stopping.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                }
                continue;
            }
            // Exited before its turn: asked to stop with the supervisor, or crashed. It held no lease to hand back.
            await spare.Exited.ConfigureAwait(false);
            _notice?.Forget(spare.WorkerId);
            var how = DescribeExit(spare.Process.ExitCode);
            spare.Process.Dispose();
            if (_stopping.IsCancellationRequested)
            {
                return;
            }
            if (Stopwatch.GetElapsedTime(spare.StartedAt) >= settings.ResetBackoffAfter)
            {
                backoff = settings.InitialBackoff;
            }
            LogSpareExited(spare.ProcessId, spare.WorkerId, how, FormatUptime(backoff));
            if (!await DelayAsync(backoff).ConfigureAwait(false))
            {
                return;
            }
            backoff = Next(backoff);
        }
    }

    /// <summary>Waits for a retired child to exit (its replacement runs already), then has its leases handed back if it did
    /// not do it itself, and logs it.</summary>
    private async Task EndRetiredAsync(Child child, int restarts)
    {
        await child.Exited.ConfigureAwait(false);
        var exitCode = child.Process.ExitCode;
        var uptime = Stopwatch.GetElapsedTime(child.StartedAt);
        _notice?.Forget(child.WorkerId);
        var handedBack = await HandBackAsync(child.WorkerId, exitCode).ConfigureAwait(false);
        _retired.TryRemove(child.WorkerId, out _);
        child.Process.Dispose();
        LogChildRetired(child.Slot, child.ProcessId, child.WorkerId, DescribeExit(exitCode), FormatUptime(uptime), handedBack, restarts);
    }

    /// <summary>Writes an exit's line once its hand-back is done (at once when the child did it itself).</summary>
    private static async Task LogAfterAsync(Task<string> handedBack, Action<string> log) => log(await handedBack.ConfigureAwait(false));

    /// <summary>Keeps <paramref name="task"/> until it ends, so that <see cref="RunAsync"/> waits for it.</summary>
    private void Track(Task task)
    {
        if (task.IsCompleted)
        {
            return;
        }
        _handingBack.TryAdd(task, 0);
        _ = task.ContinueWith(t => _handingBack.TryRemove(t, out _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    private TimeSpan Next(TimeSpan backoff) => TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, settings.MaxBackoff.Ticks));

    /// <summary>Waits before a restart; false when the supervisor stops meanwhile.</summary>
    private async Task<bool> DelayAsync(TimeSpan delay)
    {
        try
        {
            await Task.Delay(delay, time, _stopping.Token).ConfigureAwait(false);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    private Process Start(string workerId, bool spare)
    {
        var info = new ProcessStartInfo(settings.FileName)
        {
            UseShellExecute = false,
            // The stop channel (see the remarks); output and errors go where the supervisor's go.
            RedirectStandardInput = true,
        };
        foreach (var argument in settings.Arguments)
        {
            info.ArgumentList.Add(argument);
        }
        info.Environment[ConveyorSupervisor.SupervisorProcessIdVariable] = Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
        info.Environment[ConveyorSupervisor.WorkerIdVariable] = workerId;
        if (_notice is not null)
        {
            info.Environment[ChildNotice.FolderVariable] = _notice.Folder;
        }
        if (spare)
        {
            info.Environment[SpareTurn.Variable] = "1";
        }
        else
        {
            info.Environment.Remove(SpareTurn.Variable);
        }
        return Process.Start(info) ?? throw new InvalidOperationException($"{settings.FileName} did not start.");
    }

    /// <summary>What became of an exited child's leases, for its line: handed back by the child itself (its exit code says
    /// so), else by <see cref="HandBackLeases"/> within <see cref="SupervisorSettings.AbandonTimeout"/>; if that fails,
    /// they run out.</summary>
    private async Task<string> HandBackAsync(string workerId, int exitCode)
    {
        if (WorkerExitCodes.HandedBackItsLeases(exitCode))
        {
            return "it handed back its leases itself";
        }
        using var timeout = new CancellationTokenSource(settings.AbandonTimeout);
        try
        {
            // Off this thread: a hand-back starts a process, or calls a backend, synchronously at first.
            var count = await Task.Run(() => handBack(workerId, timeout.Token), CancellationToken.None).WaitAsync(timeout.Token).ConfigureAwait(false);
            return $"{count} leases handed back";
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogAbandonFailed(ex, workerId);
            return "its leases could not be handed back";
        }
    }

    private static string FormatUptime(TimeSpan duration) => string.Create(CultureInfo.InvariantCulture, $"{duration.TotalSeconds:F1} s");

    /// <summary>"exited with code 1", "was killed by signal 9 (SIGKILL)".</summary>
    internal static string DescribeExit(int exitCode)
    {
        // .NET reports a child ended by a signal as 128 + the signal's number, as shells do.
        if (!OperatingSystem.IsWindows() && exitCode is > 128 and < 160)
        {
            var signal = exitCode - 128;
            var name = signal switch
            {
                2 => "SIGINT",
                6 => "SIGABRT: the runtime aborted, as on a stack overflow or a fatal error",
                9 => "SIGKILL",
                11 => "SIGSEGV",
                15 => "SIGTERM",
                _ => null,
            };
            return name is null ? $"was killed by signal {signal}" : $"was killed by signal {signal} ({name})";
        }
        return exitCode switch
        {
            WorkerExitCodes.Recycled => $"exited to be recycled (code {exitCode})",
            WorkerExitCodes.HardTimeLimit => $"exited after a task passed the hard time limit (code {exitCode})",
            WorkerExitCodes.LeasesNotHandedBack => $"stopped without the backend confirming that it handed back its leases (code {exitCode})",
            _ => $"exited with code {exitCode}",
        };
    }

    /// <summary>Kills children still running (the supervisor itself failed).</summary>
    public ValueTask DisposeAsync()
    {
        KillAll();
        _stopping.Dispose();
        return ValueTask.CompletedTask;
    }

    [LoggerMessage(1, LogLevel.Information, "Supervisor {ProcessId} runs {Processes} worker processes: {Command}")]
    private partial void LogStarting(int processId, int processes, string command);

    [LoggerMessage(2, LogLevel.Information, "Worker process {Slot} started: pid {ProcessId}, worker {WorkerId}")]
    private partial void LogChildStarted(int slot, int processId, string workerId);

    [LoggerMessage(3, LogLevel.Warning, "Worker process {Slot} (pid {ProcessId}, worker {WorkerId}) {How} after {Uptime}; {HandedBack}; restart {Restarts} in {Delay}")]
    private partial void LogChildCrashed(int slot, int processId, string workerId, string how, string uptime, string handedBack, string delay, int restarts);

    [LoggerMessage(4, LogLevel.Information, "Worker process {Slot} (pid {ProcessId}, worker {WorkerId}) {How} after {Uptime}; {HandedBack}; replaced at once (restart {Restarts})")]
    private partial void LogChildReplaced(int slot, int processId, string workerId, string how, string uptime, string handedBack, int restarts);

    [LoggerMessage(5, LogLevel.Information, "Worker process {Slot} (pid {ProcessId}, worker {WorkerId}) {How}; {HandedBack}")]
    private partial void LogChildStopped(int slot, int processId, string workerId, string how, string handedBack);

    [LoggerMessage(6, LogLevel.Information, "Stopping: {Children} worker processes drain for up to {Timeout}")]
    private partial void LogDraining(int children, TimeSpan timeout);

    [LoggerMessage(7, LogLevel.Warning, "Killing {Children} worker processes: {Reason}")]
    private partial void LogKilling(int children, string reason);

    [LoggerMessage(8, LogLevel.Information, "Supervisor stopped after {Restarts} restarts")]
    private partial void LogStopped(int restarts);

    [LoggerMessage(9, LogLevel.Error, "Worker process {Slot} could not be started")]
    private partial void LogStartFailed(Exception exception, int slot);

    [LoggerMessage(11, LogLevel.Information, "Worker process {Slot} (pid {ProcessId}, worker {WorkerId}) recycles: it stopped fetching and drains; its replacement starts now")]
    private partial void LogChildRetiring(int slot, int processId, string workerId);

    [LoggerMessage(12, LogLevel.Information, "Worker process {Slot} (pid {ProcessId}, worker {WorkerId}) {How} after {Uptime}; {HandedBack}; replaced at once, when it began to drain (restart {Restarts})")]
    private partial void LogChildRetired(int slot, int processId, string workerId, string how, string uptime, string handedBack, int restarts);

    [LoggerMessage(13, LogLevel.Information, "Spare worker process started: pid {ProcessId}, worker {WorkerId}; it waits to take the place of the next child that recycles or exits")]
    private partial void LogSpareStarted(int processId, string workerId);

    [LoggerMessage(14, LogLevel.Information, "Worker process {Slot} started: pid {ProcessId}, worker {WorkerId} (the spare, after waiting {Waited})")]
    private partial void LogSpareTookPlace(int slot, int processId, string workerId, string waited);

    [LoggerMessage(15, LogLevel.Warning, "Spare worker process (pid {ProcessId}, worker {WorkerId}) {How} before its turn; it held no task lease; another starts in {Delay}")]
    private partial void LogSpareExited(int processId, string workerId, string how, string delay);

    [LoggerMessage(16, LogLevel.Error, "The spare worker process could not be started")]
    private partial void LogSpareStartFailed(Exception exception);

    [LoggerMessage(10, LogLevel.Warning, "Could not hand back the leases of worker {WorkerId}; they come back when they run out")]
    private partial void LogAbandonFailed(Exception exception, string workerId);
}
