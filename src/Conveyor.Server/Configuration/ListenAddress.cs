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

    /// <summary>The URL Kestrel binds: <c>http://127.0.0.1:8000</c>, <c>http://[::1]:8000</c>.</summary>
    public static string Url(string host, int port)
    {
        var bare = host.Trim('[', ']');
        var hostPart = IPAddress.TryParse(bare, out var address) && address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6
            ? $"[{bare}]"
            : host;
        return $"http://{hostPart}:{port}";
    }

    /// <summary>Refuses a non-loopback address when no API key is configured: anyone who could reach the port could run tasks.</summary>
    public static void EnsureSafe(string host, int port, IEnumerable<string> apiKeys)
    {
        if (IsLoopback(host) || apiKeys.Any(k => !string.IsNullOrWhiteSpace(k)))
        {
            return;
        }
        throw new ConveyorConfigurationException(
            $"Refusing to listen on {Url(host, port)} without API keys: anyone who can reach it could enqueue and cancel tasks. " +
            "Set CONVEYOR_API_KEYS (comma-separated) or pass --api-key, or listen on 127.0.0.1 (HOST) behind a proxy.");
    }
}
