using System.Threading.Channels;
using Conveyor.Backends;

namespace Conveyor.Postgres;

/// <summary>
/// Group commit for enqueues: calls that arrive while an insert is in flight are merged into the next one,
/// so concurrent callers share one statement, one transaction and one WAL flush, and the process holds
/// at most <see cref="MaxInFlight"/> connections for enqueues however many callers there are.
/// <para>
/// Why: with a statement per call, a burst of callers each took a pooled connection; when the pool ran
/// dry it opened new ones (a server process each, whose first statements load the catalogue), which
/// slowed the burst further. Grouped, one caller costs one round trip as before, and sixteen cost about
/// the same. If a merged insert fails, each call in it is retried alone, so an error reaches only the
/// call that caused it.
/// </para>
/// </summary>
internal sealed class PostgresEnqueueGroups : IAsyncDisposable
{
    /// <summary>Inserts that run at once. Two overlap one group's round trip with the next group's gathering.</summary>
    public const int MaxInFlight = 2;

    /// <summary>Rows gathered into one insert, unless one call alone brings more.</summary>
    public const int MaxRowsPerGroup = 1_000;

    private readonly Func<IReadOnlyList<TaskMessage>, CancellationToken, Task<EnqueueResult[]>> _insert;
    private readonly Channel<Pending> _pending = Channel.CreateUnbounded<Pending>(new UnboundedChannelOptions { SingleWriter = false });
    private readonly Task[] _loops;
    private readonly Lock _gather = new();

    public PostgresEnqueueGroups(Func<IReadOnlyList<TaskMessage>, CancellationToken, Task<EnqueueResult[]>> insert)
    {
        _insert = insert;
        _loops = new Task[MaxInFlight];
        for (var i = 0; i < _loops.Length; i++)
        {
            _loops[i] = Task.Run(RunAsync);
        }
    }

    /// <summary>Queues the messages for the next group; completes when their insert has committed.</summary>
    public async Task<IReadOnlyList<EnqueueResult>> EnqueueAsync(IReadOnlyList<TaskMessage> messages, CancellationToken cancellationToken)
    {
        var pending = new Pending(messages, cancellationToken);
        ObjectDisposedException.ThrowIf(!_pending.Writer.TryWrite(pending), this);
        // Not cancellable once queued: the insert may already be committing, and its outcome must reach the caller.
        return await pending.Result.Task.ConfigureAwait(false);
    }

    private async Task RunAsync()
    {
        var reader = _pending.Reader;
        var group = new List<Pending>();
        var messages = new List<TaskMessage>();
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            if (_abandoned)
            {
                FailQueued();
                return;
            }
            group.Clear();
            messages.Clear();
            // Peek and read as one step, or the other loop could take the peeked call between them.
            lock (_gather)
            {
                while (reader.TryPeek(out var next)
                    && (group.Count == 0 || messages.Count + next.Messages.Count <= MaxRowsPerGroup)
                    && reader.TryRead(out next))
                {
                    if (next.CancellationToken.IsCancellationRequested)
                    {
                        next.Result.TrySetCanceled(next.CancellationToken);
                        continue;
                    }
                    group.Add(next);
                    messages.AddRange(next.Messages);
                }
            }
            if (group.Count == 0)
            {
                continue;
            }
            if (group.Count == 1)
            {
                await RunOneAsync(group[0]).ConfigureAwait(false);
                continue;
            }
            EnqueueResult[] results;
            try
            {
                results = await _insert(messages, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                Interlocked.Increment(ref _insertsEnded);
                // Nothing of the group committed (one statement): each call again alone, so each gets its own outcome.
                foreach (var pending in group)
                {
                    if (_abandoned)
                    {
                        pending.Result.TrySetException(new ObjectDisposedException(nameof(PostgresEnqueueGroups)));
                        continue;
                    }
                    await RunOneAsync(pending).ConfigureAwait(false);
                }
                continue;
            }
            Interlocked.Increment(ref _insertsEnded);
            var offset = 0;
            foreach (var pending in group)
            {
                pending.Result.TrySetResult(new ArraySegment<EnqueueResult>(results, offset, pending.Messages.Count));
                offset += pending.Messages.Count;
            }
        }
    }

    private async Task RunOneAsync(Pending pending)
    {
        try
        {
            var results = await _insert(pending.Messages, pending.CancellationToken).ConfigureAwait(false);
            Interlocked.Increment(ref _insertsEnded);
            pending.Result.TrySetResult(results);
        }
        catch (OperationCanceledException ex) when (pending.CancellationToken.IsCancellationRequested)
        {
            Interlocked.Increment(ref _insertsEnded);
            pending.Result.TrySetCanceled(ex.CancellationToken);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Interlocked.Increment(ref _insertsEnded);
            pending.Result.TrySetException(ex);
        }
    }

    /// <summary>Lets queued groups finish while inserts keep ending, then stops; later calls fail with
    /// <see cref="ObjectDisposedException"/>, and so do calls still queued once no insert has ended for
    /// <see cref="DisposeWait"/>.</summary>
    public async ValueTask DisposeAsync()
    {
        _pending.Writer.TryComplete();
        var loops = Task.WhenAll(_loops);
        while (true)
        {
            var ended = Volatile.Read(ref _insertsEnded);
            try
            {
                await loops.WaitAsync(DisposeWait).ConfigureAwait(false);
                return;
            }
            catch (TimeoutException) when (Volatile.Read(ref _insertsEnded) != ended)
            {
                // A backlog on a server that answers: its callers get their outcomes.
            }
            catch (TimeoutException)
            {
                // A server that does not answer: an insert in flight ends by Npgsql's own limits and its outcome reaches
                // its callers then; none starts after this, so that a process stops within its documented bound.
                _abandoned = true;
                FailQueued();
                return;
            }
        }
    }

    /// <summary>How long a dispose waits with no insert ending before it gives up the calls still queued.</summary>
    private static readonly TimeSpan DisposeWait = TimeSpan.FromSeconds(2);

    private volatile bool _abandoned;
    private long _insertsEnded;

    private void FailQueued()
    {
        while (_pending.Reader.TryRead(out var pending))
        {
            pending.Result.TrySetException(new ObjectDisposedException(nameof(PostgresEnqueueGroups)));
        }
    }

    private sealed class Pending(IReadOnlyList<TaskMessage> messages, CancellationToken cancellationToken)
    {
        public IReadOnlyList<TaskMessage> Messages { get; } = messages;
        public CancellationToken CancellationToken { get; } = cancellationToken;
        public TaskCompletionSource<IReadOnlyList<EnqueueResult>> Result { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
