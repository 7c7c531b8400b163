using System.Net;
using Microsoft.AspNetCore.HttpOverrides;
using IPNetwork = System.Net.IPNetwork;

namespace Conveyor.Server.Configuration;

/// <summary>
/// What <see cref="ServerOptions.BehindProxy"/> turns on: ASP.NET Core's forwarded-headers middleware, believing
/// <c>X-Forwarded-For</c>, <c>-Proto</c> and <c>-Host</c> only from <see cref="ServerOptions.KnownProxies"/>.
/// </summary>
internal static class ReverseProxy
{
    private const string KnownProxiesSetting = "Conveyor:KnownProxies (CONVEYOR_KNOWN_PROXIES, --known-proxies)";

    /// <summary>The addresses believed when none is configured: this machine's (a proxy on the same host).</summary>
    public static readonly IReadOnlyList<string> DefaultKnownProxies = ["127.0.0.0/8", "::1"];

    /// <summary>The middleware's options for <paramref name="knownProxies"/> (loopback when empty). Throws
    /// <see cref="ConveyorConfigurationException"/> naming an entry that is not an address or a network.</summary>
    public static void Configure(ForwardedHeadersOptions options, IEnumerable<string> knownProxies)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(knownProxies);
        var entries = knownProxies.Select(p => p.Trim()).Where(p => p.Length > 0).ToList();
        if (entries.Count == 0)
        {
            entries = [.. DefaultKnownProxies];
        }
        options.ForwardedHeaders = ForwardedHeaders.XForwardedFor | ForwardedHeaders.XForwardedProto | ForwardedHeaders.XForwardedHost;
        // The middleware's own defaults (loopback) are replaced, not added to: only the configured proxies are believed.
        options.KnownProxies.Clear();
        options.KnownIPNetworks.Clear();
        // Walks X-Forwarded-For from the right through every known proxy and stops at the first address that is not one,
        // which is the client: a client's own X-Forwarded-For entries, left of what its proxy appended, are never taken.
        options.ForwardLimit = null;
        foreach (var entry in entries)
        {
            if (entry.Contains('/', StringComparison.Ordinal))
            {
                if (!IPNetwork.TryParse(entry, out var network))
                {
                    throw Invalid(entry, "is not a network");
                }
                options.KnownIPNetworks.Add(network);
            }
            else if (IPAddress.TryParse(entry.Trim('[', ']'), out var address))
            {
                options.KnownProxies.Add(address);
            }
            else
            {
                throw Invalid(entry, "is not an IP address or network");
            }
        }
    }

    /// <summary>Refuses plain HTTP off loopback: API keys and task data would cross the network in clear.</summary>
    public static void EnsureEncrypted(string host, int port, bool tls, bool behindProxy)
    {
        if (tls || behindProxy || ListenAddress.IsLoopback(host))
        {
            return;
        }
        throw new ConveyorConfigurationException(
            $"Refusing to listen on {ListenAddress.Url(host, port, tls: false)} without TLS: API keys and task data would cross the network in clear. " +
            "Set a certificate with Conveyor:Tls:CertificateFile and Conveyor:Tls:KeyFile (CONVEYOR_TLS__CERTIFICATE_FILE, CONVEYOR_TLS__KEY_FILE, " +
            "--tls-cert, --tls-key), or, behind a proxy that terminates TLS, Conveyor:BehindProxy (CONVEYOR_BEHIND_PROXY=true, --behind-proxy) " +
            $"with the proxy's addresses in {KnownProxiesSetting}.");
    }

    /// <summary>Refuses <see cref="ServerOptions.BehindProxy"/> without configured API keys: a proxy in front means clients
    /// from beyond this machine, as an address off loopback does.</summary>
    public static void EnsureKeys(bool behindProxy, bool keysConfigured)
    {
        if (behindProxy && !keysConfigured)
        {
            throw new ConveyorConfigurationException(
                "Conveyor:BehindProxy (CONVEYOR_BEHIND_PROXY, --behind-proxy) is set without API keys: through the proxy anyone could enqueue and cancel tasks. " +
                "Set CONVEYOR_API_KEYS (comma-separated) or CONVEYOR_API_KEY_FILE (--api-key-file).");
        }
    }

    private static ConveyorConfigurationException Invalid(string entry, string problem) =>
        new($"{KnownProxiesSetting} entry '{entry}' {problem}: use IP addresses (10.0.0.5, ::1) or networks (10.0.0.0/8, fd00::/8), comma-separated.");
}
