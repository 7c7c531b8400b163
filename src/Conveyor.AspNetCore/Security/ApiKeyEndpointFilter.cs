using System.Security.Cryptography;
using System.Text;
using Conveyor.AspNetCore.Requests;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;
using Microsoft.Net.Http.Headers;

namespace Conveyor.AspNetCore.Security;

/// <summary>The configured API keys, kept as SHA-256 hashes so that checking one takes the same time whatever it is.</summary>
internal sealed class ApiKeyValidator
{
    private readonly byte[][] _keyHashes;

    public ApiKeyValidator(IOptions<ConveyorApiOptions> options)
    {
        _keyHashes = options.Value.ApiKeys
            .Select(k => k.Trim())
            .Where(k => k.Length > 0)
            .Select(k => SHA256.HashData(Encoding.UTF8.GetBytes(k)))
            .ToArray();
    }

    /// <summary>Whether any key is configured; without one the API is open.</summary>
    public bool Required => _keyHashes.Length > 0;

    /// <summary>Whether <paramref name="presented"/> is one of the keys. Hashing first makes every comparison the
    /// same length, and every key is compared, so neither the length nor the position of a match shows in the time.</summary>
    public bool IsValid(ReadOnlySpan<char> presented) => Match(presented) is not null;

    /// <summary>The hash of the key <paramref name="presented"/> is, or null when it is none of them.</summary>
    public byte[]? Match(ReadOnlySpan<char> presented)
    {
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(Encoding.UTF8.GetBytes(presented.ToString()), hash);
        byte[]? match = null;
        foreach (var key in _keyHashes)
        {
            if (CryptographicOperations.FixedTimeEquals(hash, key))
            {
                match = key;
            }
        }
        return match;
    }

    /// <summary>Every configured key's hash: the secrets that sign dashboard sessions.</summary>
    public IReadOnlyList<byte[]> KeyHashes => _keyHashes;
}

/// <summary>
/// Guards <c>/api</c>. A state-changing request (not GET, HEAD or OPTIONS) that a browser marks as coming from another
/// site or origin (<c>Sec-Fetch-Site: cross-site</c>, or an <c>Origin</c> whose host is not this request's) is answered
/// 403, with or without keys: an open API on loopback cannot be driven by a web page the user happens to visit. When keys
/// are configured, a request needs <c>Authorization: Bearer &lt;key&gt;</c> or the dashboard's session cookie, and a
/// state-changing request by cookie also needs the session's CSRF token in <c>X-Conveyor-CSRF</c>.
/// </summary>
internal sealed class ApiKeyEndpointFilter(ApiKeyValidator validator, DashboardSessions sessions) : IEndpointFilter
{
    private const string Scheme = "Bearer ";

    public ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        if (CrossSiteProblem(http.Request) is { } crossSite)
        {
            return ValueTask.FromResult<object?>(crossSite);
        }
        if (!validator.Required)
        {
            return next(context);
        }
        var header = http.Request.Headers.Authorization.ToString();
        if (header.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase))
        {
            return validator.IsValid(header.AsSpan(Scheme.Length).Trim())
                ? next(context)
                : Unauthorized(http, "The API key is not valid.");
        }
        if (sessions.Read(http.Request) is { } session)
        {
            if (IsSafe(http.Request.Method) || DashboardSessions.CsrfMatches(http.Request, session))
            {
                return next(context);
            }
            return ValueTask.FromResult<object?>(ApiProblems.Status(StatusCodes.Status403Forbidden, "Forbidden.",
                $"A state-changing request made with the dashboard's session cookie needs its CSRF token in the header {DashboardSessions.CsrfHeader}."));
        }
        return Unauthorized(http, "This API needs an API key: send the header 'Authorization: Bearer <key>', or sign in to the dashboard.");
    }

    internal static bool IsSafe(string method) => HttpMethods.IsGet(method) || HttpMethods.IsHead(method) || HttpMethods.IsOptions(method);

    /// <summary>A 403 problem for a state-changing request that a browser sent from another site or origin; null otherwise.
    /// Clients that are not browsers send neither header and pass. The Origin's host is compared with the request's
    /// <c>Host</c> (without scheme and port, which a TLS-terminating proxy changes): a proxy must pass the Host on.</summary>
    internal static object? CrossSiteProblem(HttpRequest request)
    {
        if (IsSafe(request.Method))
        {
            return null;
        }
        var fetchSite = request.Headers["Sec-Fetch-Site"].ToString();
        var origin = request.Headers.Origin.ToString();
        var crossSite = string.Equals(fetchSite, "cross-site", StringComparison.OrdinalIgnoreCase);
        if (!crossSite && origin.Length > 0)
        {
            crossSite = !Uri.TryCreate(origin, UriKind.Absolute, out var originUri)
                || !string.Equals(originUri.Host, request.Host.Host, StringComparison.OrdinalIgnoreCase);
        }
        return crossSite
            ? ApiProblems.Status(StatusCodes.Status403Forbidden, "Cross-site request refused.",
                $"A state-changing request from another site (Origin '{origin}', Sec-Fetch-Site '{fetchSite}') is refused; call the API from its own origin, or without a browser.")
            : null;
    }

    private static ValueTask<object?> Unauthorized(HttpContext http, string detail)
    {
        http.Response.Headers[HeaderNames.WWWAuthenticate] = "Bearer realm=\"conveyor\"";
        return ValueTask.FromResult<object?>(ApiProblems.Status(StatusCodes.Status401Unauthorized, "Unauthorized.", detail));
    }
}
