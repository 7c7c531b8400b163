using System.Buffers;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Conveyor.Backends;
using Microsoft.Extensions.Logging;

namespace Conveyor.Sqlite;

/// <summary>
/// SQLite's notifier. In this process, through a <see cref="NotificationHub"/> at publish time. Across processes on
/// the machine, by Unix domain datagram sockets in a private folder beside the database file (<c>&lt;db&gt;.notify/</c>,
/// mode 0700): every instance that subscribes binds one socket there, and a publish sends one datagram (kind, channel,
/// payload) to each other socket in the folder — a real signal that wakes the receiver's thread, not a poll of the
/// file. A socket whose owner is gone (ECONNREFUSED, ENOENT) is removed by the first sender that finds it so.
/// </summary>
/// <remarks>
/// <para>A receiver's queue holds few datagrams (Linux's <c>net.unix.max_dgram_qlen</c>, 10 by default). A publish
/// through <see cref="PublishAsync"/> waits up to <see cref="BlockingSendTimeout"/> for room; ready notifications from
/// the writer's thread never wait. A datagram that found no room is dropped, and the next one that reaches that peer
/// is preceded by a "missed" marker, so its subscribers get <see cref="Notification.Missed"/> and look again.</para>
/// <para>Windows has no Unix datagram sockets: there the notifier reaches this process only
/// (<see cref="IsSupported"/> is false), and other processes' workers find work by their fallback poll.</para>
/// </remarks>
internal sealed partial class SqliteNotifier : INotifier, IDisposable
{
    /// <summary>The largest payload in UTF-8 bytes: 8,000, as the in-process notifier's (a datagram holds far more).</summary>
    public const int MaxPayload = InProcessNotifier.MaxPayload;

    /// <summary>How long a publish waits for room in a peer's receive queue before it drops the datagram for that peer.</summary>
    public static readonly TimeSpan BlockingSendTimeout = TimeSpan.FromMilliseconds(100);

    // sun_path holds 108 bytes on Linux and 104 on macOS, the terminator included.
    private const int MaxSocketPathBytes = 103;
    private const byte KindNotification = (byte)'N';
    private const byte KindMissed = (byte)'M';
    private const string SocketExtension = ".sock";
    // More queues made ready between two flushes than this are sent as one "any queue" notification.
    private const int MaxReadyQueuesPerFlush = 8;
    private static readonly TimeSpan ListingTrust = TimeSpan.FromSeconds(2);

    private readonly NotificationHub _hub = new();
    private readonly ILogger _logger;
    private readonly string? _folder;
    private readonly string _socketName;
    private readonly Lock _gate = new();
    private readonly HashSet<string> _pendingReady = new(StringComparer.Ordinal);
    private Socket? _receiver;
    private Thread? _receiveThread;
    private Socket? _sender;
    private Socket? _blockingSender;
    private Peer[] _peers = [];
    private DateTime _folderWriteTime;
    private DateTime _listedAt;
    private bool _listenFailed;
    private volatile bool _disposed;

    /// <summary>Whether this platform has Unix domain datagram sockets (not Windows).</summary>
    public static bool IsSupported => !OperatingSystem.IsWindows() && Socket.OSSupportsUnixDomainSockets;

    /// <summary>A notifier for the database at <paramref name="databasePath"/> (a full path).</summary>
    public SqliteNotifier(string databasePath, ILogger logger)
    {
        _logger = logger;
        _socketName = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8)) + SocketExtension;
        if (IsSupported)
        {
            _folder = FolderFor(databasePath);
        }
    }

    /// <summary>The folder holding the sockets of every instance on this database, or null where cross-process
    /// notifications are unsupported. Beside the file; under the temporary folder (named by a hash of the database
    /// path) when that path is too long for a socket address.</summary>
    public string? Folder => _folder;

    /// <summary>This process's subscriptions.</summary>
    public NotificationHub Hub => _hub;

    internal static string? FolderFor(string databasePath)
    {
        var beside = databasePath + ".notify";
        if (Encoding.UTF8.GetByteCount(beside) + 1 + 16 + SocketExtension.Length <= MaxSocketPathBytes)
        {
            return beside;
        }
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(databasePath)))[..16];
        var temporary = Path.Combine(Path.GetTempPath(), "conveyor-notify-" + hash);
        return Encoding.UTF8.GetByteCount(temporary) + 1 + 16 + SocketExtension.Length <= MaxSocketPathBytes ? temporary : null;
    }

    /// <inheritdoc />
    public ValueTask PublishAsync(string channel, string payload, CancellationToken cancellationToken)
    {
        NotifierPayload.Check(channel, payload, MaxPayload);
        ObjectDisposedException.ThrowIf(_disposed, this);
        _hub.Deliver(new Notification(channel, payload));
        Send(channel, payload, blocking: true);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask<IAsyncDisposable> SubscribeAsync(string channel, Action<Notification> handler, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var subscription = _hub.Subscribe(channel, handler);
        // Bound before this returns: a publisher that lists the folder from now on finds this instance's socket.
        EnsureListening();
        return ValueTask.FromResult(subscription);
    }

    /// <summary>Work became ready in <paramref name="queue"/> (empty: any queue): delivers it in this process at once
    /// and keeps it for the next <see cref="FlushReady"/>, which sends it to the other processes.</summary>
    public void Ready(string queue)
    {
        _hub.Deliver(new Notification(NotifierChannels.Ready, queue));
        if (_folder is null)
        {
            return;
        }
        lock (_pendingReady)
        {
            _pendingReady.Add(queue);
        }
    }

    /// <summary>Sends the ready notifications kept since the last flush to the other processes, one per queue (one for
    /// any queue when there are many), without waiting for room in a peer's queue. Runs on the writer's thread after
    /// each commit, so that a commit holding many enqueues sends one datagram per queue and peer.</summary>
    public void FlushReady()
    {
        if (_folder is null)
        {
            return;
        }
        string[] queues;
        lock (_pendingReady)
        {
            if (_pendingReady.Count == 0)
            {
                return;
            }
            queues = _pendingReady.Count > MaxReadyQueuesPerFlush || _pendingReady.Contains("") ? [""] : [.. _pendingReady];
            _pendingReady.Clear();
        }
        foreach (var queue in queues)
        {
            Send(NotifierChannels.Ready, queue, blocking: false);
        }
    }

    private void EnsureListening()
    {
        if (_folder is null || _receiver is not null || _listenFailed)
        {
            return;
        }
        lock (_gate)
        {
            if (_receiver is not null || _listenFailed || _disposed)
            {
                return;
            }
            var path = Path.Combine(_folder, _socketName);
            Socket? socket = null;
            try
            {
                CreatePrivateFolder(_folder);
                socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
                socket.Bind(new UnixDomainSocketEndPoint(path));
                var thread = new Thread(() => Receive(socket)) { IsBackground = true, Name = "conveyor-sqlite-notify" };
                thread.Start();
                _receiveThread = thread;
                _receiver = socket;
            }
            catch (Exception ex) when (ex is SocketException or IOException or UnauthorizedAccessException)
            {
                socket?.Dispose();
                // Notifications still reach this process; other processes' workers fall back to their poll.
                _listenFailed = true;
                LogListenFailed(_logger, path, ex);
            }
        }
    }

    private static void CreatePrivateFolder(string folder)
    {
        const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
        if (OperatingSystem.IsWindows())
        {
            return;
        }
        Directory.CreateDirectory(folder, Private);
        // Another user's folder (possible under the temporary folder) could let them read or send notifications.
        if ((File.GetUnixFileMode(folder) & ~Private) != 0)
        {
            throw new UnauthorizedAccessException($"{folder} is open to other users (mode {Convert.ToString((int)File.GetUnixFileMode(folder), 8)}); it must be 0700.");
        }
    }

    private void Receive(Socket socket)
    {
        var buffer = new byte[2 + 63 + MaxPayload + 64];
        while (!_disposed)
        {
            int length;
            try
            {
                length = socket.Receive(buffer);
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (SocketException ex)
            {
                if (_disposed)
                {
                    return;
                }
                LogReceiveFailed(_logger, ex);
                // Not seen in practice; a pause keeps a socket that fails at once from spinning this thread.
                Thread.Sleep(100);
                continue;
            }
            if (length >= 2 && buffer[0] == KindMissed)
            {
                _hub.DeliverMissed();
            }
            else if (length >= 2 && buffer[0] == KindNotification && 2 + buffer[1] <= length)
            {
                var channel = Encoding.ASCII.GetString(buffer, 2, buffer[1]);
                var payload = Encoding.UTF8.GetString(buffer, 2 + buffer[1], length - 2 - buffer[1]);
                _hub.Deliver(new Notification(channel, payload));
            }
        }
    }

    private void Send(string channel, string payload, bool blocking)
    {
        if (_folder is null)
        {
            return;
        }
        var peers = Peers();
        if (peers.Length == 0)
        {
            return;
        }
        var size = 2 + channel.Length + Encoding.UTF8.GetByteCount(payload);
        var rented = ArrayPool<byte>.Shared.Rent(size);
        try
        {
            rented[0] = KindNotification;
            rented[1] = (byte)channel.Length;
            Encoding.ASCII.GetBytes(channel, 0, channel.Length, rented, 2);
            Encoding.UTF8.GetBytes(payload, 0, payload.Length, rented, 2 + channel.Length);
            var datagram = rented.AsSpan(0, size);
            foreach (var peer in peers)
            {
                // A peer that missed datagrams hears so first; until there is room for that, it hears nothing.
                if (peer.Missed && SendTo(peer, [KindMissed, 0], blocking: false) != SendResult.Sent)
                {
                    continue;
                }
                peer.Missed = false;
                if (SendTo(peer, datagram, blocking) == SendResult.Full)
                {
                    peer.Missed = true;
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private enum SendResult
    {
        Sent,
        Full,
        Gone,
    }

    private SendResult SendTo(Peer peer, ReadOnlySpan<byte> datagram, bool blocking)
    {
        try
        {
            SenderSocket(blocking).SendTo(datagram, SocketFlags.None, peer.EndPoint);
            return SendResult.Sent;
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.WouldBlock or SocketError.TimedOut or SocketError.NoBufferSpaceAvailable)
        {
            return SendResult.Full;
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionRefused or SocketError.AddressNotAvailable or SocketError.AddressFamilyNotSupported)
        {
            // ECONNREFUSED: the file is there but its owner closed it (or died); ENOENT: the file is gone.
            Forget(peer);
            return SendResult.Gone;
        }
        catch (SocketException ex)
        {
            LogSendFailed(_logger, peer.Path, ex);
            return SendResult.Gone;
        }
        catch (ObjectDisposedException)
        {
            return SendResult.Gone;
        }
    }

    private Socket SenderSocket(bool blocking)
    {
        if ((blocking ? _blockingSender : _sender) is { } existing)
        {
            return existing;
        }
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (blocking)
            {
                return _blockingSender ??= new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified)
                {
                    SendTimeout = (int)BlockingSendTimeout.TotalMilliseconds,
                };
            }
            return _sender ??= new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified) { Blocking = false };
        }
    }

    private void Forget(Peer peer)
    {
        try
        {
            File.Delete(peer.Path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Another sender removed it first, or it is not ours to remove: either way, stop sending to it.
        }
        lock (_gate)
        {
            _peers = [.. _peers.Where(p => !ReferenceEquals(p, peer))];
        }
    }

    /// <summary>The other instances' sockets. Listed again when the folder changed since the last listing, or changed
    /// shortly before it (its time stamp is coarse: a socket bound in the same tick would not change it again).</summary>
    private Peer[] Peers()
    {
        var folder = _folder!;
        // A missing folder reads as 1601-01-01: nobody listens yet.
        var writeTime = Directory.GetLastWriteTimeUtc(folder);
        var peers = Volatile.Read(ref _peers);
        if (writeTime == _folderWriteTime && _listedAt - writeTime > ListingTrust)
        {
            return peers;
        }
        lock (_gate)
        {
            var listedAt = DateTime.UtcNow;
            string[] files;
            try
            {
                files = Directory.Exists(folder) ? Directory.GetFiles(folder, "*" + SocketExtension) : [];
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                LogListFailed(_logger, folder, ex);
                files = [];
            }
            var known = _peers.ToDictionary(p => p.Path, StringComparer.Ordinal);
            var list = new List<Peer>(files.Length);
            foreach (var file in files)
            {
                if (Path.GetFileName(file) != _socketName)
                {
                    list.Add(known.TryGetValue(file, out var peer) ? peer : new Peer(file));
                }
            }
            _peers = [.. list];
            _folderWriteTime = writeTime;
            _listedAt = listedAt;
            return _peers;
        }
    }

    /// <summary>Closes and removes this instance's socket; publishing ends.</summary>
    public void Dispose()
    {
        Socket? receiver;
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            receiver = _receiver;
            _receiver = null;
        }
        if (receiver is not null)
        {
            // Removed first, so that no sender finds it between the close and the delete.
            try
            {
                File.Delete(Path.Combine(_folder!, _socketName));
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
            }
            try
            {
                // Ends the blocking receive at once.
                receiver.Shutdown(SocketShutdown.Both);
            }
            catch (SocketException)
            {
                // Not connected: closing it below ends the receive too.
            }
            receiver.Dispose();
            _receiveThread?.Join(TimeSpan.FromSeconds(5));
        }
        _sender?.Dispose();
        _blockingSender?.Dispose();
    }

    private sealed class Peer(string path)
    {
        public string Path { get; } = path;
        public UnixDomainSocketEndPoint EndPoint { get; } = new(path);
        // Set when a datagram to it was dropped for want of room.
        public volatile bool Missed;
    }

    [LoggerMessage(EventId = 7001, Level = LogLevel.Warning, Message = "SQLite notifier cannot listen at {Path}; notifications from other processes will not reach this one (their workers' fallback poll finds the work)")]
    private static partial void LogListenFailed(ILogger logger, string path, Exception exception);

    [LoggerMessage(EventId = 7002, Level = LogLevel.Debug, Message = "SQLite notifier: receiving failed")]
    private static partial void LogReceiveFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 7003, Level = LogLevel.Debug, Message = "SQLite notifier: sending to {Path} failed")]
    private static partial void LogSendFailed(ILogger logger, string path, Exception exception);

    [LoggerMessage(EventId = 7004, Level = LogLevel.Warning, Message = "SQLite notifier cannot list {Folder}; notifications will not reach other processes")]
    private static partial void LogListFailed(ILogger logger, string folder, Exception exception);
}
