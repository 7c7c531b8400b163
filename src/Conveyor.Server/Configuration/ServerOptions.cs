namespace Conveyor.Server.Configuration;

/// <summary>Where the server listens and which database it uses, bound from the <c>Conveyor</c> section
/// (environment: <c>HOST</c>, <c>PORT</c>, <c>DATABASE_URL</c>).</summary>
internal sealed class ServerOptions
{
    /// <summary>The default <see cref="DatabaseUrl"/>.</summary>
    public const string DefaultDatabaseUrl = "sqlite:///./data/conveyor.db";

    /// <summary>Address to listen on: an IP address or <c>localhost</c>. Default <c>127.0.0.1</c>. Any address but a
    /// loopback one needs API keys.</summary>
    public string Host { get; set; } = "127.0.0.1";

    /// <summary>Host names the server answers to (the request's <c>Host</c> header; environment <c>ALLOWED_HOSTS</c>,
    /// comma-separated): <c>conveyor.example.com</c>, <c>*.example.com</c> for its subdomains, an IP address (IPv6 in
    /// brackets), or <c>*</c> for any; without ports. <c>localhost</c>, <c>127.0.0.1</c> and <c>[::1]</c> are always
    /// accepted. Default none: without API keys only those three (a web page cannot reach the API by rebinding its own
    /// name to 127.0.0.1); with configured keys, any.</summary>
    public IList<string> AllowedHosts { get; } = [];

    /// <summary>TCP port; 0 takes any free port. Default 8000.</summary>
    public int Port { get; set; } = 8000;

    /// <summary>Whether the server serves <c>GET /metrics</c> (Prometheus text, behind the API keys when set;
    /// environment <c>CONVEYOR_METRICS</c>). Default true.</summary>
    public bool Metrics { get; set; } = true;

    /// <summary>Database URL. Default <c>sqlite:///./data/conveyor.db</c> (relative to the working directory).</summary>
    public string DatabaseUrl { get; set; } = DefaultDatabaseUrl;

    /// <summary>Redis URL (<c>redis://</c> or <c>rediss://</c>; environment <c>REDIS_URL</c>): selects the Redis backend
    /// unless <see cref="DatabaseUrl"/> is set to something other than its default. Default none.</summary>
    public string? RedisUrl { get; set; }

    /// <summary>RabbitMQ URL (<c>amqp://</c> or <c>amqps://</c>; environment <c>AMQP_URL</c>): moves the queue role to
    /// RabbitMQ, with the SQL database of <see cref="DatabaseUrl"/> as its store. Ignored when Redis is selected. Default none.</summary>
    public string? AmqpUrl { get; set; }
}

/// <summary>A setting that cannot work; the message says what to change. The CLI prints it and exits with code 2.</summary>
internal sealed class ConveyorConfigurationException : Exception
{
    public ConveyorConfigurationException() { }

    public ConveyorConfigurationException(string message) : base(message) { }

    public ConveyorConfigurationException(string message, Exception innerException) : base(message, innerException) { }
}
