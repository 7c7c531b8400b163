namespace Conveyor.Server.Configuration;

/// <summary>Where the server listens and which database it uses, bound from the <c>Conveyor</c> section
/// (environment: <c>HOST</c>, <c>PORT</c>, <c>DATABASE_URL</c>).</summary>
internal sealed class ServerOptions
{
    /// <summary>The default <see cref="DatabaseUrl"/>.</summary>
    public const string DefaultDatabaseUrl = "sqlite:///./data/conveyor.db";

    /// <summary>Address to listen on: an IP address or <c>localhost</c>. Default <c>127.0.0.1</c>. Any address but a
    /// loopback one needs API keys, and a certificate (<see cref="Tls"/>) or a TLS proxy in front (<see cref="BehindProxy"/>).</summary>
    public string Host { get; set; } = "127.0.0.1";

    /// <summary>Host names the server answers to (the request's <c>Host</c> header; environment <c>ALLOWED_HOSTS</c>,
    /// comma-separated): <c>conveyor.example.com</c>, <c>*.example.com</c> for its subdomains, an IP address (IPv6 in
    /// brackets), or <c>*</c> for any; without ports. <c>localhost</c>, <c>127.0.0.1</c> and <c>[::1]</c> are always
    /// accepted. Default none: without API keys only those three (a web page cannot reach the API by rebinding its own
    /// name to 127.0.0.1); with configured keys, any.</summary>
    public IList<string> AllowedHosts { get; } = [];

    /// <summary>The certificate Kestrel serves HTTPS with (<c>Conveyor:Tls</c>). Default none: plain HTTP, allowed on a
    /// loopback address or behind a TLS proxy (<see cref="BehindProxy"/>) only.</summary>
    public ServerTlsOptions Tls { get; } = new();

    /// <summary>Whether the server sits behind a reverse proxy that terminates TLS (environment
    /// <c>CONVEYOR_BEHIND_PROXY</c>, flag <c>--behind-proxy</c>): it may then listen off loopback without a certificate,
    /// and takes the client's address, scheme and host from <c>X-Forwarded-For</c>, <c>-Proto</c> and <c>-Host</c> sent by
    /// <see cref="KnownProxies"/>. Needs API keys, as a server off loopback does. Default false.</summary>
    public bool BehindProxy { get; set; }

    /// <summary>The proxies whose <c>X-Forwarded-*</c> headers are believed when <see cref="BehindProxy"/> is set: IP
    /// addresses or networks (<c>10.0.0.5</c>, <c>10.0.0.0/8</c>, <c>fd00::/8</c>; environment
    /// <c>CONVEYOR_KNOWN_PROXIES</c>, comma-separated). Default none, which stands for loopback (<c>127.0.0.0/8</c>,
    /// <c>::1</c>): a proxy on the same machine. Headers from any other address are ignored.</summary>
    public IList<string> KnownProxies { get; } = [];

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

/// <summary>The certificate of <c>conveyor server</c>'s HTTPS (<c>Conveyor:Tls</c>): PEM files, or a PKCS#12 (PFX) file.
/// Secrets come from the environment or a file, never from a flag.</summary>
internal sealed class ServerTlsOptions
{
    /// <summary>The certificate: a PEM file (<c>-----BEGIN CERTIFICATE-----</c>, the chain after it, optionally the key
    /// too) or a PKCS#12 file (<c>.pfx</c>, <c>.p12</c>) holding the key (environment <c>CONVEYOR_TLS__CERTIFICATE_FILE</c>,
    /// flag <c>--tls-cert</c>). Setting it turns HTTPS on. Default none.</summary>
    public string? CertificateFile { get; set; }

    /// <summary>The PEM private key of a PEM <see cref="CertificateFile"/> (<c>-----BEGIN PRIVATE KEY-----</c>, RSA or
    /// EC; encrypted with <see cref="Password"/> when it says <c>ENCRYPTED</c>; environment <c>CONVEYOR_TLS__KEY_FILE</c>,
    /// flag <c>--tls-key</c>). Default none: the key is read from the certificate file.</summary>
    public string? KeyFile { get; set; }

    /// <summary>The password of a PKCS#12 file or of an encrypted PEM key (environment <c>CONVEYOR_TLS__PASSWORD</c>; no
    /// flag, which <c>ps</c> would show). Default none.</summary>
    public string? Password { get; set; }

    /// <summary>A file whose first line is <see cref="Password"/> (environment <c>CONVEYOR_TLS__PASSWORD_FILE</c>, flag
    /// <c>--tls-password-file</c>). Default none.</summary>
    public string? PasswordFile { get; set; }

    /// <summary>The <c>max-age</c> of the <c>Strict-Transport-Security</c> header on HTTPS answers (served with the
    /// certificate, or forwarded as HTTPS by a known proxy), except to <c>localhost</c>, <c>127.0.0.1</c> and <c>[::1]</c>;
    /// zero sends none. Default 365 days.</summary>
    public TimeSpan HstsMaxAge { get; set; } = TimeSpan.FromDays(365);
}

/// <summary>A setting that cannot work; the message says what to change. The CLI prints it and exits with code 2.</summary>
internal sealed class ConveyorConfigurationException : Exception
{
    public ConveyorConfigurationException() { }

    public ConveyorConfigurationException(string message) : base(message) { }

    public ConveyorConfigurationException(string message, Exception innerException) : base(message, innerException) { }
}
