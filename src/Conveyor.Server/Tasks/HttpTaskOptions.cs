namespace Conveyor.Server.Tasks;

/// <summary>Settings of the built-in <c>http.request</c> task, bound from <c>Conveyor:Http</c>
/// (environment: <c>CONVEYOR_HTTP__ALLOWED_HOSTS</c>, <c>CONVEYOR_HTTP__MAX_RESPONSE_BODY_BYTES</c>, …).</summary>
internal sealed class HttpTaskOptions
{
    /// <summary>Hosts the task may call: exact names or addresses (<c>api.example.com</c>, <c>127.0.0.1</c>), or
    /// <c>*.example.com</c> for every subdomain of example.com (not example.com itself); <c>*</c> allows every host.
    /// Default none: every URL is refused, so that enqueueing cannot reach the server's own network by default.</summary>
    public IList<string> AllowedHosts { get; } = [];

    /// <summary>Internal addresses the task may connect to (<c>10.0.0.0/8</c>, <c>127.0.0.1</c>, <c>fd00::/8</c>). Loopback,
    /// private, link-local (the cloud metadata address included) and reserved addresses are refused by default even for
    /// an allowed host name — checked on the address connected to, so DNS rebinding cannot slip past — unless a range
    /// here holds them or <see cref="AllowedHosts"/> names the exact address.</summary>
    public IList<string> AllowedNetworks { get; } = [];

    /// <summary>Longest response body kept in the result, in bytes; a longer one is cut there and marked
    /// <c>bodyTruncated</c>. Default 65,536 (64 KiB).</summary>
    public int MaxResponseBodyBytes { get; set; } = 64 * 1024;

    /// <summary>Time limit of a request whose arguments give no <c>timeoutSeconds</c>. Default 30 s.</summary>
    public TimeSpan DefaultTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Largest <c>timeoutSeconds</c> accepted. Default 5 min.</summary>
    public TimeSpan MaxTimeout { get; set; } = TimeSpan.FromMinutes(5);
}
