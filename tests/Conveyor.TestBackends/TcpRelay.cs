using System.Net;
using System.Net.Sockets;

namespace Conveyor.TestBackends;

/// <summary>
/// A TCP relay on 127.0.0.1 in front of a backend server (the shared test PostgreSQL or Redis), so that a process under
/// test can lose its backend without the shared server being touched. <see cref="Cut"/> stops it answering: connections
/// stay open and new ones are accepted, but nothing passes either way any more, as across a network partition or to a
/// frozen host; a client finds out only by its own time limits.
/// </summary>
public sealed class TcpRelay : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly string _host;
    private readonly int _port;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<TcpClient> _connections = [];
    private readonly Task _accepting;
    private volatile bool _cut;
    private int _disposed;

    private TcpRelay(string host, int port)
    {
        _host = host;
        _port = port;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        _accepting = Task.Run(AcceptAsync);
    }

    /// <summary>The port the relay listens on (127.0.0.1).</summary>
    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>Relays 127.0.0.1:<see cref="Port"/> to <paramref name="host"/>:<paramref name="port"/>.</summary>
    public static TcpRelay Start(string host, int port) => new(host, port);

    /// <summary><paramref name="url"/> with its <c>host:port</c> (that of <paramref name="server"/>) pointed at the relay.</summary>
    public string Through(string url, Uri server) =>
        url.Replace($"@{server.Host}:{server.Port}", $"@127.0.0.1:{Port}", StringComparison.Ordinal)
            .Replace($"//{server.Host}:{server.Port}", $"//127.0.0.1:{Port}", StringComparison.Ordinal);

    /// <summary>From now on nothing passes: what either side sends is dropped, and no connection is closed.</summary>
    public void Cut() => _cut = true;

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }
            Keep(client);
            if (!_cut)
            {
                _ = Task.Run(() => RelayAsync(client));
            }
        }
    }

    private void Keep(TcpClient client)
    {
        lock (_connections)
        {
            _connections.Add(client);
        }
    }

    private async Task RelayAsync(TcpClient client)
    {
        var upstream = new TcpClient();
        Keep(upstream);
        try
        {
            await upstream.ConnectAsync(_host, _port, _stop.Token);
            var done = await Task.WhenAny(PumpAsync(client.GetStream(), upstream.GetStream()), PumpAsync(upstream.GetStream(), client.GetStream()));
            await done;
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or IOException or ObjectDisposedException)
        {
        }
        if (!_cut)
        {
            // One side closed: so does the other, as a direct connection would. After the cut nothing is closed.
            client.Dispose();
            upstream.Dispose();
        }
    }

    private async Task PumpAsync(NetworkStream from, NetworkStream to)
    {
        var buffer = new byte[16 * 1024];
        while (true)
        {
            var read = await from.ReadAsync(buffer, _stop.Token);
            if (read == 0)
            {
                if (_cut)
                {
                    // Not passed on either.
                    await Task.Delay(Timeout.Infinite, _stop.Token);
                }
                return;
            }
            if (!_cut)
            {
                await to.WriteAsync(buffer.AsMemory(0, read), _stop.Token);
            }
        }
    }

    /// <summary>Stops listening and closes every connection, so that both sides see them end; a second call does nothing.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }
        await _stop.CancelAsync();
        _listener.Stop();
        await _accepting;
        lock (_connections)
        {
            foreach (var connection in _connections)
            {
                connection.Dispose();
            }
        }
        _stop.Dispose();
    }
}
