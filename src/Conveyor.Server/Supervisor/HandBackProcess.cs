using System.Diagnostics;
using System.Globalization;
using System.IO.Pipes;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Conveyor.Server.Supervisor;

/// <summary>
/// The lean supervisor's hand-back of an exited child's leases, in a short-lived process, so that the supervisor itself
/// never loads a backend or the configuration stack (<see cref="LeanSupervisor"/>). It starts the children's own command
/// (the same program, arguments, working directory and environment, so the same configuration) with
/// <see cref="VariableName"/> set to the child's worker id and without <see cref="ConveyorSupervisor.SupervisorProcessIdVariable"/>:
/// <c>conveyor worker</c> then checks its settings, builds the backend, hands back that worker's leases and concurrency
/// slots, announces the tasks this ended for good (<see cref="LeaseHandBack"/>), logs on standard error, prints how many
/// leases it ended on standard output, and exits 0 (<see cref="Cli.HandBackCommand"/>). The supervisor reads that number,
/// and kills the process if it has not ended by its timeout.
/// </summary>
internal static class HandBackProcess
{
    /// <summary>Set to a worker id in a hand-back process's environment; under the <c>CONVEYOR_SUPERVISOR_</c> prefix,
    /// which names no setting.</summary>
    public const string VariableName = "CONVEYOR_SUPERVISOR_HAND_BACK";

    /// <summary>How long the supervisor waits for a hand-back process (its start, its configuration, the backend's
    /// calls) before it kills it and leaves the leases to run out.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    /// <summary>How long the hand-back process gives the backend's calls, within <see cref="Timeout"/>.</summary>
    public static readonly TimeSpan BackendDeadline = TimeSpan.FromSeconds(10);

    /// <summary>The worker whose leases this process is to hand back, or null when it is not a hand-back process.</summary>
    public static string? RequestedWorkerId => Environment.GetEnvironmentVariable(VariableName) is { Length: > 0 } workerId ? workerId : null;

    /// <summary>Runs <paramref name="fileName"/> <paramref name="arguments"/> as the hand-back process of
    /// <paramref name="workerId"/> and returns how many leases it ended; throws when it failed or did not end before
    /// <paramref name="cancellationToken"/> (it is then killed).</summary>
    public static async Task<int> RunAsync(string fileName, IReadOnlyList<string> arguments, string workerId, CancellationToken cancellationToken)
    {
        var info = new ProcessStartInfo(fileName)
        {
            UseShellExecute = false,
            // Its answer; its log lines go to standard error, which it shares with the supervisor.
            RedirectStandardOutput = true,
            // Closed at once: it reads nothing, and must not hold a terminal's input.
            RedirectStandardInput = true,
        };
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }
        info.Environment[VariableName] = workerId;
        info.Environment.Remove(ConveyorSupervisor.SupervisorProcessIdVariable);
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"{fileName} did not start.");
        var processId = process.Id;
        process.StandardInput.Close();
        // Read with read(2) on a pool thread, to the end of the pipe (the process ended, or was killed): PipeStream's own
        // reads, even synchronous ones, go through System.Net.Sockets on Unix, which with what it loads would stay in
        // the supervisor for the rest of its life (about 3 MB).
        var pipe = ((PipeStream)process.StandardOutput.BaseStream).SafePipeHandle;
        var output = Task.Run(() => ReadToEnd(pipe), CancellationToken.None);
        try
        {
            await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            try
            {
                process.Kill();
            }
            catch (Exception ex) when (ex is InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                // It ended meanwhile.
            }
            throw new TimeoutException($"the hand-back process (pid {processId}) did not end within {Timeout}; it was killed");
        }
        var lines = (await output.ConfigureAwait(false)).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (process.ExitCode != 0 || lines.Length == 0 || !int.TryParse(lines[^1], NumberStyles.None, CultureInfo.InvariantCulture, out var count))
        {
            throw new InvalidOperationException($"the hand-back process (pid {processId}) exited with code {process.ExitCode} (its lines above say why)");
        }
        return count;
    }

    /// <summary>What the process wrote on <paramref name="pipe"/>, up to its end (at most 64 KB are kept).</summary>
    private static string ReadToEnd(SafePipeHandle pipe)
    {
        const int MaxKept = 64 * 1024;
        var buffer = new byte[512];
        using var kept = new MemoryStream();
        var added = false;
        try
        {
            pipe.DangerousAddRef(ref added);
            var descriptor = (int)pipe.DangerousGetHandle();
            while (true)
            {
                var read = NativeMethods.Read(descriptor, buffer, buffer.Length);
                if (read > 0)
                {
                    if (kept.Length < MaxKept)
                    {
                        kept.Write(buffer, 0, (int)read);
                    }
                }
                else if (read == 0 || Marshal.GetLastPInvokeError() != EINTR)
                {
                    break;
                }
            }
        }
        finally
        {
            if (added)
            {
                pipe.DangerousRelease();
            }
        }
        return Encoding.UTF8.GetString(kept.GetBuffer(), 0, (int)kept.Length);
    }

    private const int EINTR = 4;

    private static class NativeMethods
    {
        [DllImport("libc", EntryPoint = "read", SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern nint Read(int descriptor, byte[] buffer, nint count);
    }
}
