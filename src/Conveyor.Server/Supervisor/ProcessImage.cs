using System.Collections;
using System.Runtime.InteropServices;

namespace Conveyor.Server.Supervisor;

/// <summary>Replaces the program this process runs (<c>execve(2)</c>): the process keeps its id, parent, standard
/// streams, working directory and signal targets, so a service manager, a shell's job control and <c>kill</c> see no
/// change; everything it had loaded and touched is gone.</summary>
internal static partial class ProcessImage
{
    /// <summary>Whether <see cref="Replace"/> can work here: Linux, where the command line is read back from
    /// <c>/proc/self/cmdline</c>.</summary>
    public static bool IsSupported => OperatingSystem.IsLinux() && File.Exists(CommandLinePath) && Environment.ProcessPath is not null;

    private const string CommandLinePath = "/proc/self/cmdline";

    /// <summary>Runs this process's own command line again, as it was given (the same <c>argv[0]</c>, so <c>ps</c> shows
    /// the same command), with <paramref name="extraVariables"/> added to the environment. Returns only if that failed:
    /// the error number.</summary>
    public static int ReplaceWithSelf(IReadOnlyDictionary<string, string> extraVariables)
    {
        ArgumentNullException.ThrowIfNull(extraVariables);
        var parts = File.ReadAllText(CommandLinePath).Split('\0');
        // Each argument ends with a NUL, so the last part is empty.
        var arguments = parts.Length > 0 && parts[^1].Length == 0 ? parts[..^1] : parts;
        var environment = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (DictionaryEntry variable in Environment.GetEnvironmentVariables())
        {
            environment[(string)variable.Key] = (string?)variable.Value ?? "";
        }
        foreach (var (name, value) in extraVariables)
        {
            environment[name] = value;
        }
        return Replace(Environment.ProcessPath!, arguments, environment.Select(v => v.Key + "=" + v.Value).ToArray());
    }

    private static int Replace(string fileName, string[] arguments, string[] environment)
    {
        Console.Out.Flush();
        Console.Error.Flush();
        var argv = ToNative(arguments);
        var envp = ToNative(environment);
        try
        {
            // It returns only when it failed: -1, with the error number in errno.
            var result = NativeMethods.Execve(fileName, argv, envp);
            return result == -1 ? Marshal.GetLastPInvokeError() : result;
        }
        finally
        {
            Free(argv);
            Free(envp);
        }
    }

    /// <summary>A NULL-terminated array of UTF-8 strings.</summary>
    private static IntPtr[] ToNative(string[] values)
    {
        var native = new IntPtr[values.Length + 1];
        for (var i = 0; i < values.Length; i++)
        {
            native[i] = Marshal.StringToCoTaskMemUTF8(values[i]);
        }
        return native;
    }

    private static void Free(IntPtr[] native)
    {
        foreach (var pointer in native)
        {
            Marshal.FreeCoTaskMem(pointer);
        }
    }

    private static class NativeMethods
    {
        [DllImport("libc", EntryPoint = "execve", SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int Execve([MarshalAs(UnmanagedType.LPUTF8Str)] string path, IntPtr[] argv, IntPtr[] envp);
    }
}
