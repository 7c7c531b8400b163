using System.Net;
using System.Net.Sockets;
using System.Text.Json;

namespace Conveyor.Server.Tests;

/// <summary>One server-sent event: its <c>event:</c> name (null when absent), <c>id:</c>, its <c>data:</c> text, and the data
/// parsed as JSON (null when it is not JSON; <see cref="SseClient"/> records that as a protocol error).</summary>
public sealed record SseMessage(string? Event, string? Id, string Data, JsonElement? Json)
{
    public string? Type => Json is { } json && json.ValueKind == JsonValueKind.Object && json.TryGetProperty("type", out var t) ? t.GetString() : null;

    public Guid? TaskId => Json is { } json && json.ValueKind == JsonValueKind.Object && json.TryGetProperty("taskId", out var t) ? t.GetGuid() : null;

    public string? Get(string name) =>
        Json is { } json && json.ValueKind == JsonValueKind.Object && json.TryGetProperty(name, out var value) ? value.ToString() : null;

    public override string ToString() => $"event: {Event}, data: {Data}";
}

/// <summary>
/// A client of <c>GET /api/v1/events</c> that reads the stream as a browser's EventSource does (lines, blank line ends an
/// event, <c>:</c> starts a comment) on a connection of its own, and lets a test wait for an event or a comment with a
/// deadline. With <c>read: false</c> it opens the stream and reads nothing until <see cref="StartReading"/>: a slow client.
/// </summary>
public sealed class SseClient : IAsyncDisposable
{
    private readonly HttpClient _http;
    private readonly HttpResponseMessage _response;
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _gate = new();
    private readonly List<SseMessage> _messages = [];
    private readonly List<string> _comments = [];
    private readonly List<string> _errors = [];
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task? _reading;

    private SseClient(HttpClient http, HttpResponseMessage response)
    {
        _http = http;
        _response = response;
    }

    public HttpStatusCode StatusCode => _response.StatusCode;

    public string? ContentType => _response.Content.Headers.ContentType?.MediaType;

    /// <summary>Whether the server ended the stream (end of the response body).</summary>
    public bool Ended { get; private set; }

    /// <summary>Completes when the stream ends; faults if reading it failed (a broken connection, not a clean end).</summary>
    public Task Completion => _reading ?? throw new InvalidOperationException("Not reading.");

    public IReadOnlyList<SseMessage> Messages
    {
        get
        {
            lock (_gate)
            {
                return [.. _messages];
            }
        }
    }

    public IReadOnlyList<string> Comments
    {
        get
        {
            lock (_gate)
            {
                return [.. _comments];
            }
        }
    }

    /// <summary>Task events (<c>event: task</c>) about <paramref name="taskId"/>, in the order they came.</summary>
    public IReadOnlyList<SseMessage> EventsOf(Guid taskId) => Messages.Where(m => m.Event == "task" && m.TaskId == taskId).ToList();

    /// <summary>Opens <c>/api/v1/events{query}</c>. Fails unless the answer is 200 text/event-stream, except with
    /// <paramref name="expectOk"/> false (then the caller reads <see cref="StatusCode"/> and <see cref="ReadBodyAsync"/>).</summary>
    /// <param name="receiveBufferSize">The socket's receive buffer, when given: small, so that a client that does not read
    /// pushes back on the server after a few kilobytes.</param>
    public static async Task<SseClient> OpenAsync(Uri baseAddress, string query = "", bool read = true, bool expectOk = true, int? receiveBufferSize = null)
    {
        var handler = new SocketsHttpHandler { UseProxy = false, PooledConnectionLifetime = Timeout.InfiniteTimeSpan };
        if (receiveBufferSize is { } size)
        {
            handler.ConnectCallback = async (context, cancellationToken) =>
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = size, NoDelay = true };
                try
                {
                    await socket.ConnectAsync(context.DnsEndPoint, cancellationToken);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            };
        }
        var http = new HttpClient(handler) { BaseAddress = baseAddress, Timeout = Timeout.InfiniteTimeSpan };
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/events" + query);
            request.Headers.Accept.ParseAdd("text/event-stream");
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
            var client = new SseClient(http, response);
            if (expectOk)
            {
                if (response.StatusCode != HttpStatusCode.OK)
                {
                    Assert.Fail($"GET /api/v1/events{query} answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
                }
                Assert.Equal("text/event-stream", client.ContentType);
                if (read)
                {
                    client.StartReading();
                }
            }
            return client;
        }
        catch
        {
            http.Dispose();
            throw;
        }
    }

    /// <summary>The whole body, for an answer that is not a stream (a 400).</summary>
    public Task<string> ReadBodyAsync() => _response.Content.ReadAsStringAsync();

    public void StartReading() => _reading ??= Task.Run(ReadAsync);

    private async Task ReadAsync()
    {
        try
        {
            await using var stream = await _response.Content.ReadAsStreamAsync(_stop.Token);
            using var reader = new StreamReader(stream);
            string? eventName = null;
            string? id = null;
            var data = new List<string>();
            while (await reader.ReadLineAsync(_stop.Token) is { } line)
            {
                if (line.Length == 0)
                {
                    if (data.Count > 0 || eventName is not null)
                    {
                        Add(eventName, id, string.Join('\n', data));
                    }
                    eventName = null;
                    id = null;
                    data.Clear();
                }
                else if (line[0] == ':')
                {
                    lock (_gate)
                    {
                        _comments.Add(line[1..].Trim());
                    }
                    Signal();
                }
                else
                {
                    var colon = line.IndexOf(':', StringComparison.Ordinal);
                    var field = colon < 0 ? line : line[..colon];
                    var value = colon < 0 ? "" : line[(colon + 1)..].TrimStart(' ');
                    switch (field)
                    {
                        case "event":
                            eventName = value;
                            break;
                        case "data":
                            data.Add(value);
                            break;
                        case "id":
                            id = value;
                            break;
                        case "retry":
                            break;
                        default:
                            lock (_gate)
                            {
                                _errors.Add($"unknown field in line '{line}'");
                            }
                            break;
                    }
                }
            }
            Ended = true;
        }
        finally
        {
            Signal();
        }
    }

    private void Add(string? eventName, string? id, string data)
    {
        JsonElement? json = null;
        try
        {
            using var document = JsonDocument.Parse(data);
            json = document.RootElement.Clone();
        }
        catch (JsonException ex)
        {
            lock (_gate)
            {
                _errors.Add($"data is not JSON ({ex.Message}): {data}");
            }
        }
        lock (_gate)
        {
            _messages.Add(new SseMessage(eventName, id, data, json));
        }
        Signal();
    }

    private void Signal()
    {
        TaskCompletionSource changed;
        lock (_gate)
        {
            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        changed.TrySetResult();
    }

    /// <summary>Fails if any line of the stream broke the protocol or an event's data was not JSON.</summary>
    public void AssertNoProtocolErrors()
    {
        lock (_gate)
        {
            Assert.True(_errors.Count == 0, string.Join("; ", _errors));
        }
    }

    /// <summary>Waits until <paramref name="condition"/> holds over what was read; fails after <paramref name="timeout"/>,
    /// or when the stream ends first, with what was read.</summary>
    public async Task WaitUntilAsync(Func<SseClient, bool> condition, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            Task changed;
            lock (_gate)
            {
                changed = _changed.Task;
            }
            // Read whether the stream has ended before testing the condition: an end seen after a false test could hide
            // the last events, added between the two.
            var ended = _reading is { IsCompleted: true };
            if (condition(this))
            {
                return;
            }
            var remaining = deadline - DateTime.UtcNow;
            if (remaining <= TimeSpan.Zero || ended)
            {
                Assert.Fail($"waited {timeout} for {what}; stream ended: {_reading?.IsCompleted}, {_reading?.Exception?.GetBaseException().Message}. "
                    + $"Read {Messages.Count} events, the last: {string.Join(" | ", Messages.TakeLast(8))}; comments: {string.Join(" | ", Comments.TakeLast(4))}");
            }
            await Task.WhenAny(changed, Task.Delay(remaining));
        }
    }

    /// <summary>Waits for the first event that matches and returns it.</summary>
    public async Task<SseMessage> WaitForAsync(Func<SseMessage, bool> predicate, TimeSpan timeout, string what)
    {
        await WaitUntilAsync(c => c.Messages.Any(predicate), timeout, what);
        return Messages.First(predicate);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _response.Dispose();
        if (_reading is not null)
        {
            try
            {
                await _reading;
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException or HttpRequestException or ObjectDisposedException)
            {
                // Closed by the test.
            }
        }
        _http.Dispose();
        _stop.Dispose();
    }
}
