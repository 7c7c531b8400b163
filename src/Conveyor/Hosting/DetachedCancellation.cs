namespace Conveyor;

/// <summary>
/// Cancellation whose callbacks never run on the thread that cancels. A database client may end a call in flight inside
/// its token's callback, synchronously: Npgsql sends PostgreSQL's cancel request over a new connection and waits for the
/// server to close it, for up to its connection timeout (15 s by default) when the server does not answer. Whoever
/// cancels such a token waits that long: the host stopping a service (<c>BackgroundService.StopAsync</c> cancels its
/// token synchronously), a drain awaiting <see cref="CancellationTokenSource.CancelAsync"/>. The worker's stop is bounded
/// (docs/operations.md): the tokens its backend calls and its handlers see are cancelled off the stop's path.
/// </summary>
internal static class DetachedCancellation
{
    /// <summary>A token cancelled as soon as <paramref name="token"/> is (its state at once, its callbacks on the thread
    /// pool), for a service to use in place of the host's stopping token. Dispose it when the service ends.</summary>
    public static Link LinkTo(CancellationToken token) => new(token);

    /// <summary>Cancels <paramref name="source"/> now (its token reads as cancelled on return) and runs its callbacks on
    /// the thread pool, without waiting for them; a callback's failure is observed there.</summary>
    public static void Cancel(CancellationTokenSource source)
    {
        _ = source.CancelAsync().ContinueWith(static t => _ = t.Exception, CancellationToken.None,
            TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>See <see cref="LinkTo"/>.</summary>
    internal sealed class Link : IDisposable
    {
        private readonly CancellationTokenSource _source = new();
        private readonly CancellationTokenRegistration _registration;

        public Link(CancellationToken token)
        {
            // Runs on the canceller's thread: only the state change happens there.
            _registration = token.UnsafeRegister(static s => Cancel((CancellationTokenSource)s!), _source);
        }

        public CancellationToken Token => _source.Token;

        public void Dispose()
        {
            // The registration first: its Dispose waits for a callback under way, so the source is never cancelled
            // once disposed.
            _registration.Dispose();
            _source.Dispose();
        }
    }
}
