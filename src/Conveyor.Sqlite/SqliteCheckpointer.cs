using System.Diagnostics;
using Microsoft.Data.Sqlite;

namespace Conveyor.Sqlite;

/// <summary>
/// Copies committed WAL frames into the database file on a thread of its own, so that the writer
/// rarely has to. SQLite's automatic checkpoint runs inside the COMMIT that crosses the threshold,
/// on the writer's thread: every enqueue, fetch and completion queued behind it waits for the page
/// copies and, even with <c>synchronous=NORMAL</c>, two fsyncs. A PASSIVE checkpoint on another
/// connection does the same work without holding the write lock, so the writer goes on meanwhile.
/// </summary>
/// <remarks>
/// The writer keeps an automatic checkpoint at <see cref="WriterFallbackPages"/> as a backstop:
/// a passive checkpoint never resets the WAL while commits keep arriving, so the writer's own
/// checkpoint (which by then finds little or nothing left to copy) is what lets SQLite start the WAL
/// over. Checkpoints never lose data: WAL frames stay valid until copied.
/// </remarks>
internal sealed class SqliteCheckpointer : IDisposable
{
    /// <summary>The writer's automatic checkpoint threshold, in WAL pages (4 KiB each): 4,000 pages, about 16 MiB.
    /// SQLite's default is 1,000.</summary>
    public const int WriterFallbackPages = 4000;

    /// <summary>Shortest time between two background checkpoints: 50 ms. Pages written many times within it are copied once.</summary>
    private static readonly TimeSpan MinInterval = TimeSpan.FromMilliseconds(50);

    private readonly SqliteConnection _connection;
    private readonly object _lock = new();
    private readonly Thread _thread;
    private bool _pending;
    private bool _stopping;

    public SqliteCheckpointer(string connectionString)
    {
        // A connection of its own, outside the read pool, so a checkpoint never delays a reader.
        _connection = new SqliteConnection(new SqliteConnectionStringBuilder(connectionString) { Pooling = false }.ToString());
        _connection.Open();
        _thread = new Thread(Run) { IsBackground = true, Name = "conveyor-sqlite-checkpointer" };
        _thread.Start();
    }

    /// <summary>Called by the writer after each commit: frames are waiting to be copied. Cheap and non-blocking.</summary>
    public void Committed()
    {
        lock (_lock)
        {
            if (!_pending)
            {
                _pending = true;
                Monitor.Pulse(_lock);
            }
        }
    }

    private void Run()
    {
        using var checkpoint = _connection.CreateCommand();
        checkpoint.CommandText = "PRAGMA wal_checkpoint(PASSIVE)";
        var notBefore = 0L;
        while (true)
        {
            lock (_lock)
            {
                while (!_stopping)
                {
                    var wait = _pending ? Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), notBefore) : Timeout.InfiniteTimeSpan;
                    if (_pending && wait <= TimeSpan.Zero)
                    {
                        break;
                    }
                    Monitor.Wait(_lock, wait);
                }
                if (_stopping)
                {
                    return;
                }
                _pending = false;
            }
            try
            {
                checkpoint.ExecuteNonQuery();
            }
            catch (SqliteException)
            {
                // Busy or failing: the writer's own automatic checkpoint still bounds the WAL.
            }
            notBefore = Stopwatch.GetTimestamp() + (long)(MinInterval.TotalSeconds * Stopwatch.Frequency);
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _stopping = true;
            Monitor.PulseAll(_lock);
        }
        _thread.Join();
        _connection.Dispose();
    }
}
