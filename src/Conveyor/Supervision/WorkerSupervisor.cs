using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
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
/// end of input and drains. Only the supervisor decides that a stop is immediate: it kills its children.
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
    // replacement (RecycleNotice), by worker id.
    private readonly ConcurrentDictionary<string, Child> _retired = new(StringComparer.Ordinal);
    private RecycleNotice? _notice;
    // Hand-backs (and their log lines) still under way: waited for before the supervisor returns.
    private readonly ConcurrentDictionary<Task, byte> _handingBack = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly string _idPrefix = $"{Environment.MachineName}:{Environment.ProcessId}";
    private int _restarts;

    private sealed record Child(int Slot, string WorkerId, Process Process, int ProcessId, long StartedAt)
    {
        public Task Exited { get; } = Process.WaitForExitAsync(CancellationToken.None);
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
        _notice = RecycleNotice.TryOpen();
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
        var slots = Enumerable.Range(1, settings.Processes).Select(slot => Task.Run(() => RunSlotAsync(slot), CancellationToken.None)).ToArray();
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
                LogDraining(_children.Count + _retired.Count, settings.GracefulTimeout);
                var limit = Task.Delay(settings.GracefulTimeout, time, stopNow);
                await Task.WhenAny(all, limit).ConfigureAwait(false);
                if (!all.IsCompleted && (!_children.IsEmpty || !_retired.IsEmpty))
                {
                    LogKilling(_children.Count + _retired.Count, stopNow.IsCancellationRequested ? "a second signal asked to stop at once" : $"they did not stop within {settings.GracefulTimeout}");
                }
            }
            else
            {
                LogKilling(_children.Count + _retired.Count, "asked to stop at once");
            }
            KillAll();
            await all.ConfigureAwait(false);
        }
        // The hand-backs of children that exited earlier and are still under way (each ends by its timeout).
        await Task.WhenAll(_handingBack.Keys).ConfigureAwait(false);
        LogStopped(Restarts);
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
        }
    }

    private void KillAll()
    {
        foreach (var child in _children.Values.Concat(_retired.Values))
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

    private async Task RunSlotAsync(int slot)
    {
        var backoff = settings.InitialBackoff;
        var generation = 0;
        while (true)
        {
            Child child;
            lock (_gate)
            {
                if (_stopping.IsCancellationRequested)
                {
                    return;
                }
                generation++;
                var workerId = $"{_idPrefix}:{slot}.{generation}-{Guid.NewGuid().ToString("N")[..6]}";
                // Waited for before the child can say it: a word that came first would find no one to tell.
                _ = _notice?.Retiring(workerId);
                try
                {
                    var process = Start(workerId);
                    child = new Child(slot, workerId, process, process.Id, Stopwatch.GetTimestamp());
                }
                catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or InvalidOperationException or IOException)
                {
                    _notice?.Forget(workerId);
                    LogStartFailed(ex, slot);
                    child = null!;
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
            LogChildStarted(slot, child.ProcessId, child.WorkerId);

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

    private Process Start(string workerId)
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
            info.Environment[RecycleNotice.FolderVariable] = _notice.Folder;
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

    [LoggerMessage(10, LogLevel.Warning, "Could not hand back the leases of worker {WorkerId}; they come back when they run out")]
    private partial void LogAbandonFailed(Exception exception, string workerId);
}
