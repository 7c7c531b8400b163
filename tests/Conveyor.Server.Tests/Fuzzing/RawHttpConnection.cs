using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Conveyor.Server.Tests.Fuzzing;

/// <summary>One answer read off the wire.</summary>
internal sealed record RawResponse(int Status, IReadOnlyDictionary<string, string> Headers, byte[] Body, bool ServerClosed)
{
    public string Header(string name) => Headers.TryGetValue(name, out var value) ? value : "";
}

/// <summary>
/// An HTTP/1.1 client over a plain socket, written for the fuzzer: <see cref="HttpClient"/> refuses to send what the
/// fuzzer sends (control characters and bare CR in headers, raw bytes in the request line, two Content-Lengths,
/// truncated and slow bodies). It keeps its connection alive between requests as a browser would.
/// </summary>
internal sealed class RawHttpConnection : IAsyncDisposable
{
    private const int MaxBody = 32 * 1024 * 1024;
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly byte[] _buffer = new byte[64 * 1024];
    private int _start;
    private int _end;

    private RawHttpConnection(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: false);
    }

    public static async Task<RawHttpConnection> OpenAsync(IPEndPoint endpoint, CancellationToken cancellationToken)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(endpoint, cancellationToken);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        return new RawHttpConnection(socket);
    }

    /// <summary>Sends <paramref name="head"/> and the body as <paramref name="request"/> says, then reads the answer.</summary>
    public async Task<RawResponse> SendAsync(FuzzRequest request, CancellationToken cancellationToken)
    {
        await _stream.WriteAsync(request.Head, cancellationToken);
        var body = request.Body;
        switch (request.BodyMode)
        {
            case BodyMode.Whole:
                if (body.Length > 0)
                {
                    await _stream.WriteAsync(body, cancellationToken);
                }
                break;
            case BodyMode.Slow:
                // A few pieces with pauses between them: the server must wait for the rest, not answer from a part.
                var piece = Math.Max(1, body.Length / 4);
                for (var offset = 0; offset < body.Length; offset += piece)
                {
                    await _stream.WriteAsync(body.AsMemory(offset, Math.Min(piece, body.Length - offset)), cancellationToken);
                    await Task.Delay(25, cancellationToken);
                }
                break;
            case BodyMode.Truncated:
                // Less than the head announced, then the end of the stream: the client gave up half way.
                await _stream.WriteAsync(body.AsMemory(0, body.Length / 2), cancellationToken);
                _socket.Shutdown(SocketShutdown.Send);
                break;
        }
        return await ReadResponseAsync(request.Method == "HEAD", cancellationToken);
    }

    private async Task<RawResponse> ReadResponseAsync(bool head, CancellationToken cancellationToken)
    {
        while (true)
        {
            var statusLine = await ReadLineAsync(cancellationToken) ?? throw new IOException("The server closed the connection without an answer.");
            var parts = statusLine.Split(' ', 3);
            if (parts.Length < 2 || !parts[0].StartsWith("HTTP/1.", StringComparison.Ordinal) || !int.TryParse(parts[1], out var status))
            {
                throw new IOException($"Not an HTTP status line: '{statusLine}'");
            }
            var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            while (await ReadLineAsync(cancellationToken) is { Length: > 0 } line)
            {
                var colon = line.IndexOf(':', StringComparison.Ordinal);
                if (colon > 0)
                {
                    var name = line[..colon];
                    var value = line[(colon + 1)..].Trim();
                    headers[name] = headers.TryGetValue(name, out var existing) ? existing + ", " + value : value;
                }
            }
            if (status is 100 or 102 or 103)
            {
                continue;
            }
            if (headers.TryGetValue("Content-Type", out var type) && type.StartsWith("text/event-stream", StringComparison.Ordinal))
            {
                // An event stream never ends: the headers are the answer, and the connection is dropped.
                return new RawResponse(status, headers, [], ServerClosed: true);
            }
            byte[] body;
            var closed = headers.TryGetValue("Connection", out var connection) && connection.Contains("close", StringComparison.OrdinalIgnoreCase);
            if (head || status is 204 or 304)
            {
                body = [];
            }
            else if (headers.TryGetValue("Transfer-Encoding", out var encoding) && encoding.Contains("chunked", StringComparison.OrdinalIgnoreCase))
            {
                body = await ReadChunkedAsync(cancellationToken);
            }
            else if (headers.TryGetValue("Content-Length", out var lengthText) && long.TryParse(lengthText, out var length))
            {
                if (length > MaxBody)
                {
                    throw new IOException($"Answer body of {length} bytes");
                }
                body = await ReadExactlyAsync((int)length, cancellationToken);
            }
            else
            {
                body = await ReadToEndAsync(cancellationToken);
                closed = true;
            }
            return new RawResponse(status, headers, body, closed);
        }
    }

    private async Task<byte[]> ReadChunkedAsync(CancellationToken cancellationToken)
    {
        using var body = new MemoryStream();
        while (true)
        {
            var sizeLine = await ReadLineAsync(cancellationToken) ?? throw new IOException("Closed inside a chunked body.");
            var size = Convert.ToInt32(sizeLine.Split(';')[0].Trim(), 16);
            if (size == 0)
            {
                while (await ReadLineAsync(cancellationToken) is { Length: > 0 })
                {
                }
                return body.ToArray();
            }
            if (body.Length + size > MaxBody)
            {
                throw new IOException("Chunked answer body too large");
            }
            body.Write(await ReadExactlyAsync(size, cancellationToken));
            await ReadLineAsync(cancellationToken);
        }
    }

    private async Task<byte[]> ReadExactlyAsync(int count, CancellationToken cancellationToken)
    {
        var result = new byte[count];
        var written = 0;
        while (written < count)
        {
            if (_start == _end && !await FillAsync(cancellationToken))
            {
                throw new IOException($"Closed after {written} of {count} body bytes.");
            }
            var take = Math.Min(count - written, _end - _start);
            _buffer.AsSpan(_start, take).CopyTo(result.AsSpan(written));
            _start += take;
            written += take;
        }
        return result;
    }

    private async Task<byte[]> ReadToEndAsync(CancellationToken cancellationToken)
    {
        using var body = new MemoryStream();
        do
        {
            body.Write(_buffer, _start, _end - _start);
            _start = _end;
            if (body.Length > MaxBody)
            {
                throw new IOException("Answer body too large");
            }
        }
        while (await FillAsync(cancellationToken));
        return body.ToArray();
    }

    private async Task<string?> ReadLineAsync(CancellationToken cancellationToken)
    {
        var line = new StringBuilder();
        while (true)
        {
            if (_start == _end && !await FillAsync(cancellationToken))
            {
                return line.Length == 0 ? null : line.ToString();
            }
            var newline = _buffer.AsSpan(_start, _end - _start).IndexOf((byte)'\n');
            if (newline >= 0)
            {
                line.Append(Encoding.Latin1.GetString(_buffer, _start, newline));
                _start += newline + 1;
                return line.ToString().TrimEnd('\r');
            }
            line.Append(Encoding.Latin1.GetString(_buffer, _start, _end - _start));
            _start = _end;
            if (line.Length > 64 * 1024)
            {
                throw new IOException("Header line too long");
            }
        }
    }

    private async Task<bool> FillAsync(CancellationToken cancellationToken)
    {
        _start = 0;
        _end = await _stream.ReadAsync(_buffer, cancellationToken);
        return _end > 0;
    }

    public ValueTask DisposeAsync()
    {
        _stream.Dispose();
        _socket.Dispose();
        return ValueTask.CompletedTask;
    }
}
