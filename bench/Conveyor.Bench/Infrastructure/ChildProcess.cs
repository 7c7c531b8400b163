using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Conveyor.Bench.Infrastructure;

/// <summary>
/// A process this harness starts (the <c>conveyor</c> server or worker, or a host of its own), with
/// its output kept for error messages. Disposing kills it, and its children, by its process id.
/// </summary>
internal sealed class ChildProcess : IDisposable
{
    private const int KeptLines = 40;
    private readonly Process _process;
    private const int AllLines = 10_000;
    private readonly ConcurrentQueue<string> _output = new();
    private readonly ConcurrentQueue<string> _lines = new();

    private ChildProcess(Process process)
    {
        _process = process;
    }

    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>The exit code, once <see cref="HasExited"/>.</summary>
    public int ExitCode
    {
        get
        {
            // The asynchronous readers may still be draining the pipes: wait for them to reach the end.
            _process.WaitForExit();
            return _process.ExitCode;
        }
    }

    /// <summary>Every line the process wrote (up to 10,000), stdout and stderr interleaved: the peers' line protocol.</summary>
    public IReadOnlyList<string> Lines => [.. _lines];

    /// <summary>The last lines the process wrote, stdout and stderr interleaved.</summary>
    public string Output => string.Join(Environment.NewLine, _output);

    /// <summary>Starts <c>dotnet <paramref name="program"/> <paramref name="arguments"/></c> when
    /// <paramref name="program"/> is a <c>.dll</c>, else runs <paramref name="program"/> itself (an app host such as <c>conveyor</c>).</summary>
    public static ChildProcess Start(string program, IEnumerable<string> arguments, IReadOnlyDictionary<string, string> environment, string workingDirectory)
    {
        var isDll = program.EndsWith(".dll", StringComparison.OrdinalIgnoreCase);
        var info = new ProcessStartInfo(isDll ? DotnetHost() : program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory,
        };
        if (isDll)
        {
            info.ArgumentList.Add(program);
        }
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }
        foreach (var (name, value) in environment)
        {
            info.Environment[name] = value;
        }
        var process = new Process { StartInfo = info };
        var child = new ChildProcess(process);
        process.OutputDataReceived += (_, e) => child.Keep(e.Data);
        process.ErrorDataReceived += (_, e) => child.Keep(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return child;
    }

    /// <summary>The resident set size of the process, from <c>VmRSS</c> in <c>/proc/&lt;pid&gt;/status</c>, in KiB.</summary>
    public long ReadRssKiB()
    {
        foreach (var line in File.ReadLines($"/proc/{Id}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                var digits = new string(line.AsSpan(6).Trim().ToString().TakeWhile(char.IsAsciiDigit).ToArray());
                return long.Parse(digits, System.Globalization.CultureInfo.InvariantCulture);
            }
        }
        throw new InvalidOperationException($"No VmRSS line in /proc/{Id}/status.");
    }

    /// <summary>The peak resident set size (<c>VmHWM</c>) of the process and of every process below it, added up, in KiB:
    /// a worker of several processes (Sidekiq's two, Celery's prefork children) counts them all.</summary>
    public long ReadTreePeakKiB()
    {
        var children = new Dictionary<int, List<int>>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid))
            {
                continue;
            }
            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                // pid (comm) state ppid …; comm may hold spaces and parentheses: read after the last ')'.
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                var parent = int.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture);
                if (!children.TryGetValue(parent, out var list))
                {
                    children[parent] = list = [];
                }
                list.Add(pid);
            }
            catch (IOException)
            {
                // The process ended while we looked.
            }
        }
        long total = 0;
        var pending = new Stack<int>([Id]);
        while (pending.TryPop(out var pid))
        {
            total += ReadStatusKiB(pid, "VmHWM:");
            foreach (var child in children.GetValueOrDefault(pid) ?? [])
            {
                pending.Push(child);
            }
        }
        return total;
    }

    private static long ReadStatusKiB(int pid, string field)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith(field, StringComparison.Ordinal))
                {
                    var digits = new string(line.AsSpan(field.Length).Trim().ToString().TakeWhile(char.IsAsciiDigit).ToArray());
                    return long.Parse(digits, System.Globalization.CultureInfo.InvariantCulture);
                }
            }
        }
        catch (IOException)
        {
            // The process ended while we looked.
        }
        return 0;
    }

    /// <summary>A TCP port on the loopback interface that was free a moment ago.</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    /// <summary>The dotnet host running this harness, so children use the same runtime.</summary>
    private static string DotnetHost()
    {
        var fromSdk = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(fromSdk) && File.Exists(fromSdk))
        {
            return fromSdk;
        }
        var self = Environment.ProcessPath;
        if (self is not null && Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            return self;
        }
        return "dotnet";
    }

    private void Keep(string? line)
    {
        if (line is null)
        {
            return;
        }
        _output.Enqueue(line);
        if (_lines.Count < AllLines)
        {
            _lines.Enqueue(line);
        }
        while (_output.Count > KeptLines && _output.TryDequeue(out _))
        {
        }
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(10_000);
            }
        }
        catch (InvalidOperationException)
        {
            // It had already exited.
        }
        _process.Dispose();
    }
}
