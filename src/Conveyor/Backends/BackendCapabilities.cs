namespace Conveyor.Backends;

/// <summary>Where processes that share a backend can run.</summary>
public enum BackendReach
{
    /// <summary>One process only (the in-memory backend).</summary>
    Process,
    /// <summary>Processes on one machine (SQLite: one file on a local disk).</summary>
    Machine,
    /// <summary>Processes anywhere on the network (PostgreSQL, Redis, RabbitMQ).</summary>
    Network,
}

/// <summary>
/// What a backend offers, stated by the backend instead of guessed from its type. A conformance test that a backend
/// cannot pass is gated by one of these, with the reason written next to the gate.
/// </summary>
public sealed record BackendCapabilities
{
    /// <summary>Where the processes that share this backend can run.</summary>
    public required BackendReach Reach { get; init; }

    /// <summary>Whether notifications published in one process reach the others (PostgreSQL <c>LISTEN/NOTIFY</c>, Redis
    /// pub/sub, a RabbitMQ exchange, local datagram sockets for SQLite). When false, other processes' workers find work
    /// by their fallback poll (<see cref="WorkerOptions.FetchWait"/>).</summary>
    public required bool CrossProcessNotifications { get; init; }

    /// <summary>Largest notification payload in UTF-8 bytes. Default 8,000 (PostgreSQL's limit is 7,999 plus the
    /// terminator).</summary>
    public int MaxNotificationPayload { get; init; } = 8000;

    /// <summary>Whether <see cref="TaskMessage.Priority"/> orders fetches within a queue. Default true.</summary>
    public bool Priorities { get; init; } = true;

    /// <summary>Whether acknowledged tasks survive a restart of every process. Default true.</summary>
    public bool Durable { get; init; } = true;

    /// <summary>Whether a fetch that returns fewer leases than it asked for left nothing ready in its queues: the engine
    /// reads them at once (Redis's script, SQLite's write transaction, the in-memory backend's lock). A worker then waits
    /// for a ready notification instead of fetching again at once. Default false, as on PostgreSQL, whose fetch passes
    /// over rows that other transactions hold (<c>SKIP LOCKED</c>): fewer there does not mean that nothing more is ready.</summary>
    public bool ShortFetchMeansEmpty { get; init; }
}
