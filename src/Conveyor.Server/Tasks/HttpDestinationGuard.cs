using System.Net;
using System.Net.Http;
using System.Net.Sockets;

namespace Conveyor.Server.Tasks;

/// <summary>
/// Which addresses <c>http.request</c> may connect to, so that a task cannot be turned against the network its worker
/// runs in: every public address, and an internal one (loopback, private, link-local with the cloud metadata address
/// 169.254.169.254, shared/CGNAT, unique-local, multicast, unspecified, reserved) only when
/// <see cref="HttpTaskOptions.AllowedNetworks"/> holds it or <see cref="HttpTaskOptions.AllowedHosts"/> names it as an
/// exact address. The check is made on the address connected to (<see cref="ConnectAsync"/>), after name resolution,
/// so a name that resolves (or rebinds) to an internal address is refused whatever the allow-list of names says.
/// </summary>
internal sealed class HttpDestinationGuard
{
    private static readonly IPNetwork[] InternalNetworks =
    [
        .. new[]
        {
            "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
            "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
            "::/128", "::1/128", "64:ff9b::/96", "fc00::/7", "fe80::/10", "ff00::/8",
        }.Select(IPNetwork.Parse),
    ];

    private readonly IPNetwork[] _allowed;

    public HttpDestinationGuard(HttpTaskOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var allowed = new List<IPNetwork>();
        foreach (var entry in options.AllowedNetworks)
        {
            if (TryParseNetwork(entry, out var network))
            {
                allowed.Add(network);
            }
        }
        // An exact address in the allow-list of hosts was chosen on purpose: it is allowed, and nothing around it.
        foreach (var host in options.AllowedHosts)
        {
            if (IPAddress.TryParse(host.Trim().Trim('[', ']'), out var address))
            {
                address = Normalize(address);
                allowed.Add(new IPNetwork(address, address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128));
            }
        }
        _allowed = [.. allowed];
    }

    /// <summary>Whether <paramref name="address"/> may be connected to.</summary>
    public bool Allows(IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        address = Normalize(address);
        return !IsInternal(address) || Array.Exists(_allowed, n => n.Contains(address));
    }

    /// <summary>Whether <paramref name="address"/> is loopback, private, link-local or otherwise not on the public internet.</summary>
    public static bool IsInternal(IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        address = Normalize(address);
        return Array.Exists(InternalNetworks, n => n.Contains(address));
    }

    /// <summary>The problem with a literal address as the URL's host, or null (names are checked when they resolve).</summary>
    public string? CheckLiteralHost(Uri uri)
    {
        ArgumentNullException.ThrowIfNull(uri);
        return IPAddress.TryParse(uri.Host.Trim('[', ']'), out var address) && !Allows(address) ? Refusal(uri.Host, [address]) : null;
    }

    /// <summary>The problem with an entry of <see cref="HttpTaskOptions.AllowedNetworks"/>, or null.</summary>
    public static string? CheckNetworks(IEnumerable<string> networks)
    {
        ArgumentNullException.ThrowIfNull(networks);
        var bad = networks.FirstOrDefault(n => !TryParseNetwork(n, out _));
        return bad is null ? null : $"Conveyor:Http:AllowedNetworks: '{bad}' is not an address or range such as 10.0.0.0/8, 127.0.0.1 or fd00::/8.";
    }

    /// <summary>
    /// The connection step of the task's <see cref="SocketsHttpHandler"/>: resolves the host, drops the addresses that are
    /// not allowed, and connects to one of the rest; when none is left it throws <see cref="HttpDestinationRefusedException"/>.
    /// </summary>
    public async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        var host = context.DnsEndPoint.Host;
        var addresses = IPAddress.TryParse(host.Trim('[', ']'), out var literal)
            ? [literal]
            : await Dns.GetHostAddressesAsync(host, cancellationToken).ConfigureAwait(false);
        var allowed = addresses.Where(Allows).ToArray();
        if (allowed.Length == 0)
        {
            throw new HttpDestinationRefusedException(Refusal(host, addresses));
        }
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(allowed, context.DnsEndPoint.Port, cancellationToken).ConfigureAwait(false);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static string Refusal(string host, IPAddress[] addresses) =>
        $"'{host}' is {(addresses.Length == 0 ? "not resolvable" : "at " + string.Join(", ", addresses.Take(4)))}, an internal address " +
        "(loopback, private, link-local or reserved), which http.request does not call unless Conveyor:Http:AllowedNetworks " +
        "(CONVEYOR_HTTP__ALLOWED_NETWORKS) holds it.";

    internal static bool TryParseNetwork(string? text, out IPNetwork network)
    {
        network = default;
        text = text?.Trim();
        if (string.IsNullOrEmpty(text))
        {
            return false;
        }
        if (IPNetwork.TryParse(text, out network))
        {
            return true;
        }
        if (IPAddress.TryParse(text.Trim('[', ']'), out var address))
        {
            address = Normalize(address);
            network = new IPNetwork(address, address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128);
            return true;
        }
        return false;
    }

    private static IPAddress Normalize(IPAddress address) => address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;
}

/// <summary>An <c>http.request</c> destination refused by <see cref="HttpDestinationGuard"/>.</summary>
internal sealed class HttpDestinationRefusedException(string message) : Exception(message);
