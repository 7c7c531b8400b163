namespace Conveyor.RabbitMQ;

/// <summary>Settings of <see cref="RabbitMqBackend"/>.</summary>
public sealed class RabbitMqBackendOptions
{
    /// <summary>The broker's URL, <c>amqp://user:pass@host:port/vhost</c> (<c>AMQP_URL</c>), or <c>amqps://…</c> for TLS,
    /// with <c>?cacertfile=/path/ca.pem</c> when a private CA signs the broker's certificate (<see cref="RabbitMqUrl"/>).</summary>
    public string Url { get; set; } = "amqp://guest:guest@127.0.0.1:5672/";

    /// <summary>Prefix of every exchange and queue name, so that several deployments (or tests) share a broker.</summary>
    public string Prefix { get; set; } = "conveyor";

    /// <summary>The kind of broker queue declared per Conveyor queue. Default <see cref="RabbitMqQueueType.Auto"/>:
    /// quorum queues where the broker has them (RabbitMQ 3.8 and later), classic ones otherwise.</summary>
    public RabbitMqQueueType QueueType { get; set; } = RabbitMqQueueType.Auto;

    /// <summary>Deliveries the broker pushes ahead of fetches (<c>basic.qos</c> prefetch).</summary>
    public ushort Prefetch { get; set; } = 256;

    /// <summary>How often, at most, a fetch that finds less than it asked for looks up the buffered deliveries in the
    /// store to ack those whose task is no longer queued (more often while sweeps keep finding some). Fetches never
    /// wait: idle workers wait on the notifier, with their own fallback poll. Default 1 s.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Wait before the first reconnect attempt after the broker connection is lost; each failed attempt
    /// doubles it, up to <see cref="MaxReconnectDelay"/>, and each wait is scaled by a random factor between 0.5 and 1
    /// (jitter). A successful connection starts again from this. Default 0.5 s.</summary>
    public TimeSpan ReconnectDelay { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Longest wait between reconnect attempts. Default 30 s.</summary>
    public TimeSpan MaxReconnectDelay { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Whether an enqueue returns only once the broker has confirmed its messages (persisted them). Default
    /// false: it returns once the store holds the tasks, which is what makes them safe (the store is the record; a
    /// message only wakes a worker), and the confirms are awaited in the background, at most
    /// <see cref="MaxUnconfirmedPublishes"/> at once; a message the broker loses meanwhile (a crash before it persisted
    /// it) delays its task until a worker's fallback poll (<c>Worker:FetchWait</c>), and loses nothing. True makes a
    /// one-at-a-time enqueue wait for the broker's disk (about 0.7 ms a call on a quorum queue here, against about
    /// 0.1 ms) in exchange for a message that survives a broker crash the moment the call returns.</summary>
    public bool EnqueueWaitsForConfirms { get; set; }

    /// <summary>Enqueued messages whose confirm is awaited in the background (<see cref="EnqueueWaitsForConfirms"/>
    /// false). Past it, an enqueue waits up to 1 s a message for an earlier one's confirm, so that a producer faster
    /// than the broker is slowed to its pace rather than piling up messages in memory; when that wait runs out, the
    /// rest of the call's messages are left out (the call still succeeds; logged as event 5003, once per failing
    /// streak): their tasks are stored, and workers find them by their fallback poll (<c>Worker:FetchWait</c>), so a
    /// broker that stopped confirming slows producers but cannot hold them. Default 4096.</summary>
    public int MaxUnconfirmedPublishes { get; set; } = 4096;

    /// <summary>Whether disposing the backend disposes its store too. Default true.</summary>
    public bool OwnsStore { get; set; } = true;
}

/// <summary>The kind of RabbitMQ queue that carries a Conveyor queue's deliveries.</summary>
public enum RabbitMqQueueType
{
    /// <summary>Quorum where the broker has them (3.8 and later), classic otherwise.</summary>
    Auto,

    /// <summary>Classic durable queues with broker-side priorities (<c>x-max-priority</c>); on a cluster they live on one node.</summary>
    Classic,

    /// <summary>Quorum queues: replicated (Raft) and durable. RabbitMQ 3.x quorum queues have no priorities, which costs
    /// nothing here: the store, not the broker, decides which task runs next.</summary>
    Quorum,
}
