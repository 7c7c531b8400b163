using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Conveyor;

/// <summary>Ends the current process at once with an exit code.</summary>
/// <remarks><see cref="Environment.Exit(int)"/> is no use here: it raises ProcessExit, on which the generic host's console
/// lifetime stops the host and waits for it, that is for the very handlers that have to be cut short.</remarks>
internal static partial class ProcessTermination
{
    public static void ExitNow(int exitCode)
    {
        Console.Out.Flush();
        Console.Error.Flush();
        if (OperatingSystem.IsWindows())
        {
            // TerminateProcess: no managed shutdown either (the exit code is the runtime's own).
            Process.GetCurrentProcess().Kill();
            return;
        }
        NativeMethods.Exit(exitCode);
    }

    private static class NativeMethods
    {
        // _exit(2): ends the process without atexit handlers or the runtime's shutdown.
        [DllImport("libc", EntryPoint = "_exit")]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern void Exit(int status);
    }
}
