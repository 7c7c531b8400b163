using System.Diagnostics;
using System.Text;

namespace Conveyor.Server.Tests;

/// <summary>Runs the built <c>conveyor</c> executable (dotnet Conveyor.Server.dll from the server project's own
/// output, whose deps.json resolves the native SQLite library) with a clean environment.</summary>
public sealed class ConveyorProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly StringBuilder _error = new();
    private readonly object _gate = new();
    private TaskCompletionSource<string>? _lineWaiter;
    private Func<string, bool>? _linePredicate;

    private ConveyorProcess(Process process)
    {
        _process = process;
    }

    public string Output
    {
        get
        {
            lock (_gate)
            {
                return _output.ToString();
            }
        }
    }

    public string Error
    {
        get
        {
            lock (_gate)
            {
                return _error.ToString();
            }
        }
    }

    /// <summary>The process id (of the dotnet host, which runs the app in-process): what the worker registry reports.</summary>
    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>The repository's root (the folder of Conveyor.slnx) above the test's output folder.</summary>
    public static string RepositoryRoot => Conveyor.TestBackends.ServiceScripts.RepositoryRoot;

    // After RepositoryRoot: static initializers run in the order they are written.
    public static string ServerDll { get; } = FindServerDll();

    public static ConveyorProcess Start(string workingDirectory, IReadOnlyDictionary<string, string>? environment, params string[] args) =>
        StartProgram(ServerDll, workingDirectory, environment, args);

    /// <summary>Runs <c>dotnet <paramref name="dll"/></c> (conveyor, or a sample app) with a clean environment.</summary>
    public static ConveyorProcess StartProgram(string dll, string workingDirectory, IReadOnlyDictionary<string, string>? environment, params string[] args) =>
        StartProgram(dll, workingDirectory, environment, sigintAtDefault: false, args);

    /// <summary>
    /// Runs <c>conveyor</c> as <see cref="Start"/> does, with SIGINT's disposition reset to the default first (<c>env
    /// --default-signal=INT</c>, which then execs dotnet in the same process): a test run started in the background by a
    /// non-interactive shell (<c>.ci/run &amp;</c>) has SIGINT ignored, every process it starts inherits that, and the .NET
    /// runtime keeps an inherited SIG_IGN, so a SIGINT would never reach the process. A new session or process group
    /// (<c>setsid</c>) would not help: it leaves signal dispositions as they are.
    /// </summary>
    public static ConveyorProcess StartWithSigintAtDefault(string workingDirectory, IReadOnlyDictionary<string, string>? environment, params string[] args) =>
        StartProgram(ServerDll, workingDirectory, environment, sigintAtDefault: true, args);

    private static ConveyorProcess StartProgram(string dll, string workingDirectory, IReadOnlyDictionary<string, string>? environment, bool sigintAtDefault, string[] args)
    {
        var info = new ProcessStartInfo(sigintAtDefault ? "env" : "dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        if (sigintAtDefault)
        {
            info.ArgumentList.Add("--default-signal=INT");
            info.ArgumentList.Add("dotnet");
        }
        info.ArgumentList.Add(dll);
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }
        foreach (var name in info.Environment.Keys.ToList())
        {
            if (name is "HOST" or "PORT" or "DATABASE_URL" or "REDIS_URL" or "AMQP_URL" or "LOG_LEVEL" or "ASPNETCORE_URLS" or "URLS"
                || name.StartsWith("CONVEYOR_", StringComparison.Ordinal) || name.StartsWith("Conveyor__", StringComparison.OrdinalIgnoreCase))
            {
                info.Environment.Remove(name);
            }
        }
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[name] = value;
        }
        var process = new Process { StartInfo = info };
        var wrapper = new ConveyorProcess(process);
        process.OutputDataReceived += (_, e) => wrapper.Received(e.Data, error: false);
        process.ErrorDataReceived += (_, e) => wrapper.Received(e.Data, error: true);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return wrapper;
    }

    /// <summary>Runs to the end (at most 60 s) and returns the exit code.</summary>
    public static async Task<(int ExitCode, string Output, string Error)> RunAsync(string workingDirectory, IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        using var process = Start(workingDirectory, environment, args);
        var exitCode = await process.WaitForExitAsync(TimeSpan.FromSeconds(60));
        return (exitCode, process.Output, process.Error);
    }

    /// <summary>Runs to the end (at most 60 s) with <paramref name="input"/> written to its stdin, then stdin closed.</summary>
    public static async Task<(int ExitCode, string Output, string Error)> RunWithInputAsync(string workingDirectory,
        IReadOnlyDictionary<string, string>? environment, string input, params string[] args)
    {
        using var process = Start(workingDirectory, environment, args);
        await process._process.StandardInput.WriteAsync(input);
        process._process.StandardInput.Close();
        var exitCode = await process.WaitForExitAsync(TimeSpan.FromSeconds(60));
        return (exitCode, process.Output, process.Error);
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cancellation = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cancellation.Token);
        }
        catch (OperationCanceledException)
        {
            _process.Kill(entireProcessTree: true);
            Assert.Fail($"conveyor did not exit within {timeout}. Output: {Output} Error: {Error}");
        }
        // The parameterless wait returns only once the redirected streams are drained.
        await _process.WaitForExitAsync();
        return _process.ExitCode;
    }

    /// <summary>Waits for a line of standard output that matches; fails after <paramref name="timeout"/> or if the process ends first.</summary>
    public async Task<string> WaitForLineAsync(Func<string, bool> predicate, TimeSpan timeout)
    {
        Task<string> line;
        lock (_gate)
        {
            var existing = _output.ToString().Split('\n').FirstOrDefault(l => predicate(l.TrimEnd('\r')));
            if (existing is not null)
            {
                return existing;
            }
            _linePredicate = predicate;
            _lineWaiter = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
            line = _lineWaiter.Task;
        }
        var finished = await Task.WhenAny(line, _process.WaitForExitAsync(), Task.Delay(timeout));
        if (finished != line)
        {
            Assert.Fail($"No such line from conveyor (exited: {_process.HasExited}). Output: {Output} Error: {Error}");
        }
        return await line;
    }

    /// <summary>Kills the process with SIGKILL, as the OOM killer or a power cut to the process would, and waits for it to end.</summary>
    public void KillHard()
    {
        // Process.Kill sends SIGKILL on Unix: no shutdown code runs.
        _process.Kill();
        _process.WaitForExit();
    }

    /// <summary>Whether the process ignores <paramref name="signal"/> (its bit in <c>SigIgn</c> of /proc/PID/status) and
    /// whether it catches it (a handler is installed: <c>SigCgt</c>).</summary>
    public (bool Ignored, bool Caught) SignalDisposition(int signal)
    {
        var status = File.ReadAllLines($"/proc/{_process.Id}/status");
        bool Has(string field) => (ulong.Parse(status.Single(l => l.StartsWith(field + ":", StringComparison.Ordinal))[(field.Length + 1)..].Trim(),
            System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture) & (1UL << (signal - 1))) != 0;
        return (Has("SigIgn"), Has("SigCgt"));
    }

    /// <summary>Asks the process to stop as a service manager would (SIGTERM).</summary>
    public void Terminate() => Signal("TERM");

    /// <summary>Sends <paramref name="signal"/> (TERM, INT, KILL) to the process alone.</summary>
    public void Signal(string signal) => SignalProcess(_process.Id, signal);

    /// <summary>Sends <paramref name="signal"/> (TERM, INT, KILL) to process <paramref name="processId"/>, as <c>kill</c> does.</summary>
    public static void SignalProcess(int processId, string signal)
    {
        using var kill = Process.Start("kill", ["-" + signal, processId.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        kill.WaitForExit();
    }

    /// <summary>The built sample app <paramref name="name"/> (samples/{name}), built beside the tests (a project reference).</summary>
    public static string SampleDll(string name)
    {
        var output = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var dll = Path.Combine(RepositoryRoot, "samples", name, "bin", output.Parent!.Name, output.Name, name + ".dll");
        Assert.True(File.Exists(dll), $"{dll} is not built");
        return dll;
    }

    private void Received(string? line, bool error)
    {
        if (line is null)
        {
            return;
        }
        lock (_gate)
        {
            (error ? _error : _output).AppendLine(line);
            if (!error && _linePredicate is not null && _linePredicate(line))
            {
                _linePredicate = null;
                _lineWaiter!.TrySetResult(line);
            }
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }
        _process.Dispose();
    }

    private static string FindServerDll()
    {
        // tests/Conveyor.Server.Tests/bin/<Configuration>/<tfm>/ → src/Conveyor.Server/bin/<Configuration>/<tfm>/Conveyor.Server.dll
        var output = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var tfm = output.Name;
        var configuration = output.Parent!.Name;
        var dll = Path.Combine(RepositoryRoot, "src", "Conveyor.Server", "bin", configuration, tfm, "Conveyor.Server.dll");
        Assert.True(File.Exists(dll), $"{dll} is not built");
        return dll;
    }
}
