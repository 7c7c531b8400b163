using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Conveyor.Sqlite;

/// <summary>
/// A cross-process lock that the writers of the processes sharing one database file take before SQLite's write lock
/// (<c>BEGIN IMMEDIATE</c>) and let go of right after their commit, so that a writer that has to wait for another
/// process sleeps in the kernel and is woken when the lock is let go of, instead of polling SQLite's lock through the
/// busy handler (<see cref="SqliteBusyHandler"/>), and so that writers take turns.
/// </summary>
/// <remarks>
/// <para>Two <c>flock(2)</c> locks on side files beside the database: the gate (<c>&lt;db&gt;-wlock</c>), held across a
/// transaction, and a turnstile (<c>&lt;db&gt;-wturn</c>) that a writer passes through on its way to the gate and holds
/// while it waits there. A writer that has just committed and wants the gate again finds the turnstile held by the
/// writer waiting for the gate, so it waits behind it: writers of busy processes alternate. Without the turnstile, the
/// writer that lets go of the gate takes it again before the woken one runs, and a second process is starved
/// (measured: one child of <c>conveyor worker --processes 2</c> ran every task).</para>
/// <para>It is an optimisation only: SQLite's own locking still guards every transaction, so a process that does not
/// take the gate (an older build, the <c>sqlite3</c> shell, a platform without it) is merely slower to hand over to.
/// The kernel lets go of a killed process's <c>flock</c> locks. A wait longer than the busy timeout (a process stopped
/// while it held the gate) gives up on the gate and goes on to SQLite's lock and busy handler, as without the gate.</para>
/// <para>The blocking waits run on a thread of their own, so that the writer can stop waiting after the busy timeout:
/// <c>flock</c> has no timeout.</para>
/// </remarks>
internal sealed partial class SqliteWriterGate : IDisposable
{
    private const int LockExclusive = 2;
    private const int LockNonBlocking = 4;
    private const int LockUnlock = 8;
    private const int Interrupted = 4; // EINTR
    private const int OpenReadWrite = 0x2; // O_RDWR
    private const int OpenCreate = 0x40; // O_CREAT
    private const int OpenCloseOnExec = 0x80000; // O_CLOEXEC

    private readonly SafeFileHandle _gate;
    private readonly SafeFileHandle _turnstile;
    private readonly object _sync = new();
    private readonly Thread _waiter;
    // Guarded by _sync. _waiting: the waiter thread is taking the locks (it owns the handles' locks until it reports);
    // _holdsTurnstile: it starts with the turnstile already held (the writer's quick try got that far); _wanted: the
    // writer waits for the gate; _granted: the waiter thread got the gate for the writer, which now owns it.
    private bool _waiting;
    private bool _holdsTurnstile;
    private bool _wanted;
    private bool _granted;
    private bool _broken;
    private bool _disposed;

    private SqliteWriterGate(SafeFileHandle gate, SafeFileHandle turnstile)
    {
        _gate = gate;
        _turnstile = turnstile;
        _waiter = new Thread(WaitLoop) { IsBackground = true, Name = "conveyor-sqlite-writer-gate" };
        _waiter.Start();
    }

    /// <summary>The side files of <paramref name="databasePath"/>'s gate.</summary>
    public static (string Gate, string Turnstile) PathsFor(string databasePath) => (databasePath + "-wlock", databasePath + "-wturn");

    /// <summary>Opens the gate of the database at <paramref name="databasePath"/>, creating its side files (0600); null
    /// off Linux x64 and Arm64, or where the files cannot be opened (a read-only folder): the writer then relies on
    /// SQLite's lock and busy handler alone.</summary>
    public static SqliteWriterGate? TryOpen(string databasePath)
    {
        // open(2)'s flags below are Linux's on x64 and Arm64; elsewhere SQLite's lock and busy handler do it alone.
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture is not (Architecture.X64 or Architecture.Arm64))
        {
            return null;
        }
        var (gatePath, turnstilePath) = PathsFor(databasePath);
        SafeFileHandle? gate = null;
        SafeFileHandle? turnstile = null;
        try
        {
            gate = OpenSideFile(gatePath);
            turnstile = OpenSideFile(turnstilePath);
            return new SqliteWriterGate(gate, turnstile);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or DllNotFoundException or EntryPointNotFoundException)
        {
            gate?.Dispose();
            turnstile?.Dispose();
            return null;
        }
    }

    // Opened with open(2), not FileStream: .NET emulates FileShare with a non-blocking shared flock on the files it
    // opens, which fails (and throws) while another process holds the exclusive one, and would block it meanwhile.
    private static SafeFileHandle OpenSideFile(string path)
    {
        // Private like the database file (docs/sqlite.md) when this creates it; close-on-exec, so that a process started
        // by a handler does not inherit the lock and hold it past this process's death.
        var fd = open(path, OpenReadWrite | OpenCreate | OpenCloseOnExec, 0b110_000_000);
        if (fd < 0)
        {
            throw new IOException($"open({path}) failed: errno {Marshal.GetLastPInvokeError()}");
        }
        return new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>Takes the gate for one transaction, waiting at most <paramref name="timeout"/>; false when it was not
    /// taken (the wait ran out, or the gate failed): the transaction then goes on under SQLite's lock alone.</summary>
    public bool Enter(TimeSpan timeout)
    {
        lock (_sync)
        {
            if (_broken || _disposed)
            {
                return false;
            }
            if (!_waiting)
            {
                // Uncontended, the usual case in one process: three system calls, no thread handoff.
                if (Flock(_turnstile, LockExclusive | LockNonBlocking) == 0)
                {
                    if (Flock(_gate, LockExclusive | LockNonBlocking) == 0)
                    {
                        Flock(_turnstile, LockUnlock);
                        return true;
                    }
                    _holdsTurnstile = true;
                }
                _waiting = true;
                Monitor.PulseAll(_sync);
            }
            // Also when an earlier wait ran out and the waiter thread is still at it: its lock is this writer's to take.
            _wanted = true;
            var deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
            while (!_granted && !_broken && !_disposed)
            {
                var left = deadline - Environment.TickCount64;
                if (left <= 0)
                {
                    break;
                }
                Monitor.Wait(_sync, TimeSpan.FromMilliseconds(left));
            }
            _wanted = false;
            if (_granted)
            {
                _granted = false;
                return true;
            }
            return false;
        }
    }

    /// <summary>Lets go of the gate taken by <see cref="Enter"/>, right after the commit.</summary>
    public void Exit() => Flock(_gate, LockUnlock);

    private void WaitLoop()
    {
        try
        {
            WaitForTurns();
        }
        catch (ObjectDisposedException)
        {
            // Disposed while it waited in flock: closing the files let go of every lock taken through them.
        }
    }

    private void WaitForTurns()
    {
        while (true)
        {
            bool holdsTurnstile;
            lock (_sync)
            {
                while (!_waiting && !_disposed)
                {
                    Monitor.Wait(_sync);
                }
                if (_disposed)
                {
                    return;
                }
                holdsTurnstile = _holdsTurnstile;
            }
            var taken = holdsTurnstile || FlockBlocking(_turnstile);
            if (taken)
            {
                taken = FlockBlocking(_gate);
                Flock(_turnstile, LockUnlock);
            }
            lock (_sync)
            {
                _waiting = false;
                _holdsTurnstile = false;
                if (!taken)
                {
                    // Not EINTR, which is retried: the writer goes on without the gate from now on.
                    _broken = true;
                }
                else if (_wanted && !_disposed)
                {
                    _granted = true;
                }
                else if (!_disposed)
                {
                    // The writer stopped waiting meanwhile (its wait ran out): nobody is to hold the gate.
                    Flock(_gate, LockUnlock);
                }
                Monitor.PulseAll(_sync);
            }
        }
    }

    private static bool FlockBlocking(SafeFileHandle handle)
    {
        while (true)
        {
            if (Flock(handle, LockExclusive) == 0)
            {
                return true;
            }
            if (Marshal.GetLastPInvokeError() != Interrupted)
            {
                return false;
            }
        }
    }

    private static int Flock(SafeFileHandle handle, int operation) => flock(handle, operation);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int flock(SafeFileHandle fd, int operation);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags, int mode);

    /// <summary>Closes the side files (which lets go of any lock held through them). A waiter thread blocked in
    /// <c>flock</c> keeps its handle open until that call returns, then stops.</summary>
    public void Dispose()
    {
        lock (_sync)
        {
            _disposed = true;
            Monitor.PulseAll(_sync);
        }
        _gate.Dispose();
        _turnstile.Dispose();
    }
}
