using System.Net;

namespace Conveyor.Server.Configuration;

/// <summary>The address the server binds, and the rule that only loopback may go without API keys.</summary>
internal static class ListenAddress
{
    /// <summary>Whether <paramref name="host"/> is reachable from this machine only: <c>localhost</c> or a loopback IP.
    /// Wildcards (<c>0.0.0.0</c>, <c>::</c>, <c>*</c>, <c>+</c>) and host names are not.</summary>
    public static bool IsLoopback(string host)
    {
        ArgumentNullException.ThrowIfNull(host);
        if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }
        return IPAddress.TryParse(host.Trim('[', ']'), out var address) && IPAddress.IsLoopback(address);
    }

    /// <summary>The URL Kestrel binds: <c>http://127.0.0.1:8000</c>, <c>http://[::1]:8000</c>, <c>https://…</c> with <paramref name="tls"/>.</summary>
    public static string Url(string host, int port, bool tls = false)
    {
        var bare = host.Trim('[', ']');
        var hostPart = IPAddress.TryParse(bare, out var address) && address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6
            ? $"[{bare}]"
            : host;
        return $"{(tls ? "https" : "http")}://{hostPart}:{port}";
    }

    /// <summary>Refuses a non-loopback address when no API key is configured: anyone who could reach the port could run tasks.</summary>
    public static void EnsureSafe(string host, int port, bool keysConfigured)
    {
        if (IsLoopback(host) || keysConfigured)
        {
            return;
        }
        throw new ConveyorConfigurationException(
            $"Refusing to listen on {Url(host, port)} without API keys: anyone who can reach it could enqueue and cancel tasks. " +
            "Set CONVEYOR_API_KEYS (comma-separated) or CONVEYOR_API_KEY_FILE (--api-key-file), or listen on 127.0.0.1 (HOST) behind a proxy.");
    }

    /// <summary>The names always accepted as <c>Host</c>.</summary>
    public static readonly IReadOnlyList<string> LoopbackHosts = ["localhost", "127.0.0.1", "[::1]"];

    /// <summary>The <c>Host</c> values the server answers (ASP.NET Core's host filtering): the loopback names and
    /// <paramref name="configured"/>; without configured hosts, the loopback names only when no key is configured, and any
    /// host (<c>*</c>) when keys are. Throws <see cref="ConveyorConfigurationException"/> naming the entry that is not a host.</summary>
    public static IReadOnlyList<string> AllowedHosts(IEnumerable<string> configured, bool keysConfigured)
    {
        ArgumentNullException.ThrowIfNull(configured);
        var hosts = configured.Select(h => h.Trim()).Where(h => h.Length > 0).ToList();
        foreach (var host in hosts)
        {
            if (HostProblem(host) is { } problem)
            {
                throw new ConveyorConfigurationException(
                    $"ALLOWED_HOSTS (Conveyor:AllowedHosts) entry '{host}' {problem}: use host names (conveyor.example.com), '*.example.com' for subdomains, " +
                    "IP addresses (IPv6 in brackets: [2001:db8::1]) or '*' for any, comma-separated, without scheme, port or path.");
            }
        }
        if (hosts.Count == 0)
        {
            return keysConfigured ? ["*"] : LoopbackHosts;
        }
        return [.. LoopbackHosts, .. hosts.Except(LoopbackHosts, StringComparer.OrdinalIgnoreCase)];
    }

    private static string? HostProblem(string host)
    {
        if (host == "*")
        {
            return null;
        }
        if (host.Contains("://", StringComparison.Ordinal) || host.IndexOfAny(['/', '?', '#', '@', ' ', ',']) >= 0)
        {
            return "is not a bare host name";
        }
        if (host.StartsWith('['))
        {
            return host.EndsWith(']') && IPAddress.TryParse(host[1..^1], out var v6) && v6.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6
                ? null
                : "is not an IPv6 address in brackets";
        }
        if (host.Contains(':', StringComparison.Ordinal))
        {
            return "has a port or is an IPv6 address without brackets";
        }
        var name = host.StartsWith("*.", StringComparison.Ordinal) ? host[2..] : host;
        return name.Length > 0 && Uri.CheckHostName(name) is UriHostNameType.Dns or UriHostNameType.IPv4 ? null : "is not a host name";
    }
}
