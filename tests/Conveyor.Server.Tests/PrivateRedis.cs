using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Conveyor.Server.Tests;

/// <summary>A redis-server of this test's own (not the shared test server, which other tests use meanwhile),
/// on a free loopback port with AOF (everysec) in a private folder; killed and restarted on the same data.</summary>
internal sealed class PrivateRedis : IDisposable
{
    private readonly string _folder;
    private readonly int _port;
    private Process _process;
    private bool _running = true;

    private PrivateRedis(string folder, int port)
    {
        _folder = folder;
        _port = port;
        _process = Launch();
    }

    public string Url => $"redis://127.0.0.1:{_port.ToString(CultureInfo.InvariantCulture)}";

    public static PrivateRedis Start(string folder)
    {
        Directory.CreateDirectory(folder);
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return new PrivateRedis(folder, port);
    }

    public void Kill()
    {
        _process.Kill();
        _process.WaitForExit();
        _process.Dispose();
        _running = false;
    }

    public void Restart()
    {
        _process = Launch();
        _running = true;
    }

    private Process Launch()
    {
        var info = new ProcessStartInfo("redis-server")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var arg in new[]
        {
            "--bind", "127.0.0.1", "--port", _port.ToString(CultureInfo.InvariantCulture), "--dir", _folder,
            "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction", "--save", "",
            "--daemonize", "no",
        })
        {
            info.ArgumentList.Add(arg);
        }
        var process = Process.Start(info) ?? throw new InvalidOperationException("redis-server did not start");
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (true)
        {
            try
            {
                using var client = new TcpClient();
                client.Connect(IPAddress.Loopback, _port);
                return process;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline && !process.HasExited)
            {
                Thread.Sleep(50);
            }
        }
    }

    public void Dispose()
    {
        // Killed and not started again: nothing to stop (a test that failed while Redis was down ends here).
        if (!_running)
        {
            return;
        }
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit();
        }
        _process.Dispose();
    }
}
