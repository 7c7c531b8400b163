namespace Conveyor.Server.Tasks;

/// <summary>What <c>http.request</c> may call: checked when a task is enqueued and again when it runs
/// (the allow-list may have changed in between).</summary>
internal static class HttpTargetPolicy
{
    private static readonly HashSet<string> Methods = new(StringComparer.OrdinalIgnoreCase)
    {
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
    };

    /// <summary>The problem with calling <paramref name="url"/>, or null when it is allowed.</summary>
    public static string? CheckUrl(string? url, IEnumerable<string> allowedHosts, out Uri? uri)
    {
        uri = null;
        if (string.IsNullOrWhiteSpace(url) || !Uri.TryCreate(url, UriKind.Absolute, out var parsed))
        {
            return $"'{url}' is not an absolute URL such as https://api.example.com/hook";
        }
        if (parsed.Scheme != Uri.UriSchemeHttp && parsed.Scheme != Uri.UriSchemeHttps)
        {
            return $"only http and https URLs can be called, not {parsed.Scheme}:";
        }
        var host = parsed.Host.Trim('[', ']');
        var patterns = allowedHosts.Select(p => p.Trim()).Where(p => p.Length > 0).ToList();
        if (patterns.Count == 0)
        {
            return $"no host is allowed: Conveyor:Http:AllowedHosts is empty, so http.request refuses every URL. " +
                $"Add '{host}' to it (CONVEYOR_HTTP__ALLOWED_HOSTS) to allow this one.";
        }
        if (!patterns.Any(p => HostMatches(p, host)))
        {
            return $"host '{host}' is not in Conveyor:Http:AllowedHosts ({string.Join(", ", patterns)}). " +
                "Add it (CONVEYOR_HTTP__ALLOWED_HOSTS) to allow it.";
        }
        uri = parsed;
        return null;
    }

    /// <summary>Whether <paramref name="host"/> matches <paramref name="pattern"/>: equal ignoring case, <c>*</c>,
    /// or <c>*.example.com</c> for any name ending in <c>.example.com</c>.</summary>
    public static bool HostMatches(string pattern, string host)
    {
        pattern = pattern.Trim().Trim('[', ']');
        host = host.Trim('[', ']').TrimEnd('.');
        if (pattern == "*")
        {
            return true;
        }
        if (pattern.StartsWith("*.", StringComparison.Ordinal))
        {
            return host.Length > pattern.Length - 1 && host.EndsWith(pattern[1..], StringComparison.OrdinalIgnoreCase);
        }
        return host.Equals(pattern, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>Headers a caller may not set: the host is the URL's, and hop-by-hop headers belong to the connection.</summary>
    private static readonly HashSet<string> ReservedHeaders = new(StringComparer.OrdinalIgnoreCase)
    {
        "Host", "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "TE", "Trailer",
        "Transfer-Encoding", "Upgrade", "Content-Length",
    };

    /// <summary>The first header a caller may not set, with the problem; null when all may be sent.</summary>
    public static (string Name, string Problem)? CheckHeaders(IReadOnlyDictionary<string, string>? headers)
    {
        var reserved = headers?.Keys.FirstOrDefault(ReservedHeaders.Contains);
        return reserved is null
            ? null
            : (reserved, $"'{reserved}' cannot be set: the host comes from the URL and hop-by-hop headers from the connection " +
                $"(not {string.Join(", ", ReservedHeaders)})");
    }

    /// <summary>The URL as logs and errors show it: scheme, host and port, with the path and query (which may carry
    /// tokens) left out.</summary>
    public static string Redact(Uri uri)
    {
        ArgumentNullException.ThrowIfNull(uri);
        var origin = uri.GetLeftPart(UriPartial.Authority);
        return uri.PathAndQuery is "/" or "" ? origin + "/" : origin + "/…";
    }

    /// <summary>The problem with <paramref name="method"/>, or null.</summary>
    public static string? CheckMethod(string? method) =>
        method is not null && Methods.Contains(method) ? null : $"'{method}' is not one of {string.Join(", ", Methods)}";

    /// <summary>The problem with <paramref name="seconds"/>, or null; <paramref name="timeout"/> is the limit to use.</summary>
    public static string? CheckTimeout(double? seconds, HttpTaskOptions options, out TimeSpan timeout)
    {
        timeout = options.DefaultTimeout;
        if (seconds is not { } value)
        {
            return null;
        }
        if (!(value > 0) || value > options.MaxTimeout.TotalSeconds)
        {
            return $"{value} is out of range: more than 0 and at most {options.MaxTimeout.TotalSeconds} seconds";
        }
        timeout = TimeSpan.FromSeconds(value);
        return null;
    }
}
