using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace Conveyor;

/// <summary>
/// A child's word to its supervisor, of two kinds. <see cref="ChildNoticeKind.Retiring"/>: a recycling child stopped
/// fetching, and the supervisor hands its place to the spare or starts its replacement at once, while the old child
/// finishes what it runs and exits, so that a recycle costs no exit and start one after the other (issue 10;
/// docs/benchmarks.md, "Recycling against starting"). <see cref="ChildNoticeKind.Started"/>: a child's worker began to
/// fetch, after which the supervisor starts its spare (not beside the first children's start). The child leaves a file
/// named by its worker id (and, when it started, a suffix) in a private folder (mode 0700, under the temporary folder,
/// named to each child in <see cref="FolderVariable"/>) and sends its supervisor SIGUSR1, on which the supervisor reads
/// the folder. A signal and a file, not a socket: the supervisor stays free of the networking assemblies, to keep it
/// small beside its children. Best effort both ways: without it (Windows, a folder that cannot be made) the replacement
/// starts when the old child exits, and the spare a few seconds after the first children.
/// </summary>
internal sealed class ChildNotice : IDisposable
{
    // Ends the file name of a Started notice; a worker id has no '+' (WorkerSupervisor names them).
    private const string StartedSuffix = "+started";

    /// <summary>Set in a child's environment to the supervisor's folder.</summary>
    public const string FolderVariable = "CONVEYOR_SUPERVISOR_NOTICE";

    private readonly ConcurrentDictionary<string, TaskCompletionSource> _retiring = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, TaskCompletionSource> _started = new(StringComparer.Ordinal);
    private readonly PosixSignalRegistration _registration;

    private ChildNotice(string folder)
    {
        Folder = folder;
        _registration = PosixSignalRegistration.Create((PosixSignal)Usr1, OnSignal);
    }

    /// <summary>The folder, for the children's environment.</summary>
    public string Folder { get; }

    // SIGUSR1's number where the supervisor runs (Linux and macOS differ); 0 elsewhere.
    private static int Usr1 => OperatingSystem.IsLinux() ? 10 : OperatingSystem.IsMacOS() || OperatingSystem.IsFreeBSD() ? 30 : 0;

    /// <summary>Opens the supervisor's end, or null where it cannot be had.</summary>
    public static ChildNotice? TryOpen()
    {
        if (Usr1 == 0 || OperatingSystem.IsWindows())
        {
            return null;
        }
        try
        {
            // mkdtemp(3): a new folder, mode 0700, named without the crypto stack (which the lean supervisor must not load).
            return new ChildNotice(Directory.CreateTempSubdirectory("conveyor-supervisor-").FullName);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or PlatformNotSupportedException)
        {
            return null;
        }
    }

    /// <summary>Completes when the child <paramref name="workerId"/> says it recycles.</summary>
    public Task Retiring(string workerId) => Waiting(_retiring, workerId);

    /// <summary>Completes when the child <paramref name="workerId"/> says its worker began to fetch.</summary>
    public Task Started(string workerId) => Waiting(_started, workerId);

    private static Task Waiting(ConcurrentDictionary<string, TaskCompletionSource> words, string workerId) =>
        words.GetOrAdd(workerId, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;

    /// <summary>The child exited: nothing more to wait for from it.</summary>
    public void Forget(string workerId)
    {
        _retiring.TryRemove(workerId, out _);
        _started.TryRemove(workerId, out _);
    }

    /// <summary>In a supervised child: tells the supervisor that this worker <paramref name="kind"/> (nothing when not
    /// supervised so).</summary>
    public static void Send(string workerId, ChildNoticeKind kind)
    {
        if (Environment.GetEnvironmentVariable(FolderVariable) is not { Length: > 0 } folder || Usr1 == 0
            || !int.TryParse(Environment.GetEnvironmentVariable(ConveyorSupervisor.SupervisorProcessIdVariable), out var supervisor)
            || workerId.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0 || workerId.EndsWith(StartedSuffix, StringComparison.Ordinal))
        {
            return;
        }
        try
        {
            // Only to the parent that started this process: not to a reused pid after the supervisor died, nor, from a
            // process that a handler started with this environment, to its grandparent.
            if (NativeMethods.ParentProcessId() != supervisor)
            {
                return;
            }
            File.WriteAllBytes(Path.Combine(folder, kind == ChildNoticeKind.Started ? workerId + StartedSuffix : workerId), []);
            _ = NativeMethods.Kill(supervisor, Usr1);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or DllNotFoundException or EntryPointNotFoundException)
        {
            // The supervisor starts the replacement when this process exits, and the spare after a delay.
        }
    }

    private void OnSignal(PosixSignalContext context)
    {
        context.Cancel = true;
        try
        {
            foreach (var file in Directory.GetFiles(Folder))
            {
                var name = Path.GetFileName(file);
                var started = name.EndsWith(StartedSuffix, StringComparison.Ordinal);
                if ((started ? _started : _retiring).TryGetValue(started ? name[..^StartedSuffix.Length] : name, out var word))
                {
                    word.TrySetResult();
                }
                try
                {
                    File.Delete(file);
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    // Read again at the next signal, where it does no harm: its word was taken already.
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // The replacement starts when the child exits.
        }
    }

    public void Dispose()
    {
        _registration.Dispose();
        TryDelete(Folder);
    }

    private static void TryDelete(string folder)
    {
        try
        {
            Directory.Delete(folder, recursive: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Left in the temporary folder.
        }
    }

    private static class NativeMethods
    {
        // kill(2): the signal to the supervisor.
        [DllImport("libc", EntryPoint = "kill")]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int Kill(int pid, int signal);

        // getppid(2).
        [DllImport("libc", EntryPoint = "getppid")]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int ParentProcessId();
    }
}

/// <summary>What a child tells its supervisor (<see cref="ChildNotice"/>).</summary>
internal enum ChildNoticeKind
{
    /// <summary>Its worker began to fetch.</summary>
    Started,
    /// <summary>It recycles: it stopped fetching and drains.</summary>
    Retiring,
}
