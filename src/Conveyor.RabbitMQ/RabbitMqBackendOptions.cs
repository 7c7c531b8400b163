namespace Conveyor.RabbitMQ;

/// <summary>Settings of <see cref="RabbitMqBackend"/>.</summary>
public sealed class RabbitMqBackendOptions
{
    /// <summary>The broker's URL, <c>amqp://user:pass@host:port/vhost</c> (<c>AMQP_URL</c>).</summary>
    public string Url { get; set; } = "amqp://guest:guest@127.0.0.1:5672/";

    /// <summary>Prefix of every exchange and queue name, so that several deployments (or tests) share a broker.</summary>
    public string Prefix { get; set; } = "conveyor";

    /// <summary>Deliveries the broker pushes ahead of fetches (<c>basic.qos</c> prefetch).</summary>
    public ushort Prefetch { get; set; } = 256;

    /// <summary>How often a waiting fetch looks in the store even without a delivery, for work made
    /// ready where no message is published (a lease reaper or promotion in another process that
    /// missed its wake-up). Default 1 s.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Whether disposing the backend disposes its store too. Default true.</summary>
    public bool OwnsStore { get; set; } = true;
}
