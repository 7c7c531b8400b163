using System.Buffers.Text;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;

namespace Conveyor.AspNetCore.Security;

/// <summary>
/// The dashboard's sessions when API keys are configured: a key entered once is exchanged for a session cookie
/// (<c>conveyor_session</c>: Secure, HttpOnly, SameSite=Strict) and a CSRF token, readable by the page
/// (<c>conveyor_csrf</c>), that state-changing calls send back in <c>X-Conveyor-CSRF</c> (double submit).
/// <para>
/// A session is <c>expiry.csrf.keyId.mac</c>, the MAC an HMAC-SHA256 of <c>expiry.csrf.keyId</c> keyed with an HMAC of
/// the SHA-256 of the API key that opened it (or of the user's session secret) under the server's
/// <see cref="SessionSecret"/>; it carries that key's scopes and queues. Nothing is stored: every replica that knows the
/// key and shares the server secret accepts it, and removing or revoking the key ends its sessions. The server secret is
/// what the database does not hold: reading the database is not enough to sign a session.
/// </para>
/// <para>
/// An admin who signed in on loopback without a second factor gets a session that stays loopback's: presented from any
/// other address, or through a proxy, it is no session.
/// </para>
/// </summary>
internal sealed class DashboardSessions(ApiKeyRegistry keys, SessionSecret secret, IOptions<ConveyorApiOptions> options, TimeProvider time)
{
    /// <summary>Name of the HttpOnly session cookie.</summary>
    public const string SessionCookie = "conveyor_session";

    /// <summary>Name of the cookie that holds the CSRF token for the page's scripts.</summary>
    public const string CsrfCookie = "conveyor_csrf";

    /// <summary>Header that must repeat the CSRF token on state-changing calls made with the session cookie.</summary>
    public const string CsrfHeader = "X-Conveyor-CSRF";

    private static readonly byte[] Purpose = Encoding.UTF8.GetBytes("conveyor-dashboard-session-v3:");

    /// <summary>A session opened with <paramref name="caller"/>'s key: the session cookie's value and the CSRF token.</summary>
    public (string Session, string Csrf, DateTimeOffset Expires) Issue(ApiCaller caller)
    {
        ArgumentNullException.ThrowIfNull(caller);
        var expires = time.GetUtcNow() + options.Value.SessionLifetime;
        var csrf = Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(32));
        var payload = $"{expires.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture)}.{csrf}.{caller.KeyId}";
        return ($"{payload}.{Base64Url.EncodeToString(Mac(caller.Hash, payload))}", csrf, expires);
    }

    /// <summary>The session of the request's cookie when it is one this server signed with a configured key and has
    /// not expired; null otherwise.</summary>
    public Session? Read(HttpRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (!request.Cookies.TryGetValue(SessionCookie, out var value) || string.IsNullOrEmpty(value) || value.Length > 512)
        {
            return null;
        }
        var parts = value.Split('.');
        if (parts.Length != 4 || !long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var expiresSeconds))
        {
            return null;
        }
        if (DateTimeOffset.FromUnixTimeSeconds(Math.Min(expiresSeconds, DateTimeOffset.MaxValue.ToUnixTimeSeconds())) <= time.GetUtcNow())
        {
            return null;
        }
        byte[] presented;
        try
        {
            presented = Base64Url.DecodeFromChars(parts[3]);
        }
        catch (FormatException)
        {
            return null;
        }
        if (keys.FindById(parts[2]) is not { } caller)
        {
            return null;
        }
        var payload = $"{parts[0]}.{parts[1]}.{parts[2]}";
        if (!CryptographicOperations.FixedTimeEquals(Mac(caller.Hash, payload), presented))
        {
            return null;
        }
        // A loopback-only session (an admin without a second factor) presented from elsewhere is no session at all: not
        // even enrolment, which would let whoever holds the cookie set their own second factor without the password.
        return DashboardUsers.IsLoopbackOnly(caller.KeyId) && !IsLoopback(request.HttpContext) ? null : new Session(parts[1], caller);
    }

    /// <summary>Whether the request's <see cref="CsrfHeader"/> repeats the session's CSRF token.</summary>
    public static bool CsrfMatches(HttpRequest request, Session session)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(session);
        var header = request.Headers[CsrfHeader].ToString();
        return header.Length > 0 && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(header), Encoding.UTF8.GetBytes(session.Csrf));
    }

    /// <summary>Sets both cookies on the response, for the app's whole path.</summary>
    public static void Write(HttpContext http, string session, string csrf, DateTimeOffset expires)
    {
        ArgumentNullException.ThrowIfNull(http);
        http.Response.Cookies.Append(SessionCookie, session, Cookie(http, httpOnly: true, expires));
        http.Response.Cookies.Append(CsrfCookie, csrf, Cookie(http, httpOnly: false, expires));
    }

    /// <summary>Removes both cookies.</summary>
    public static void Clear(HttpContext http)
    {
        ArgumentNullException.ThrowIfNull(http);
        http.Response.Cookies.Delete(SessionCookie, Cookie(http, httpOnly: true, null));
        http.Response.Cookies.Delete(CsrfCookie, Cookie(http, httpOnly: false, null));
    }

    // Secure always: browsers keep Secure cookies over https, and over plain http only from loopback (localhost,
    // 127.0.0.1), which is where Conveyor may serve without TLS. Off loopback, serve the dashboard over https (a proxy).
    private static CookieOptions Cookie(HttpContext http, bool httpOnly, DateTimeOffset? expires) => new()
    {
        HttpOnly = httpOnly,
        Secure = true,
        SameSite = SameSiteMode.Strict,
        Path = http.Request.PathBase.HasValue ? http.Request.PathBase.Value : "/",
        Expires = expires,
        IsEssential = true,
    };

    /// <summary>Whether the request comes from this machine, for what loopback alone may do (an admin without a second
    /// factor): the connection's address is loopback and no proxy forwarded it. A request that a proxy forwarded
    /// (<c>X-Forwarded-For</c>, <c>Forwarded</c>, <c>X-Real-IP</c>, or <c>X-Original-For</c> left by the forwarded-headers
    /// middleware) never counts, whatever client address it names: a proxy that passes a client's own
    /// <c>X-Forwarded-For: 127.0.0.1</c> through would otherwise make that client local.</summary>
    public static bool IsLoopback(HttpContext http)
    {
        ArgumentNullException.ThrowIfNull(http);
        var headers = http.Request.Headers;
        return http.Connection.RemoteIpAddress is { } address && System.Net.IPAddress.IsLoopback(address)
            && !headers.ContainsKey("X-Forwarded-For") && !headers.ContainsKey("Forwarded") && !headers.ContainsKey("X-Real-IP")
            && !headers.ContainsKey("X-Original-For");
    }

    private byte[] Mac(byte[] keyHash, string payload)
    {
        var data = new byte[Purpose.Length + Encoding.UTF8.GetByteCount(payload)];
        Purpose.CopyTo(data, 0);
        Encoding.UTF8.GetBytes(payload, data.AsSpan(Purpose.Length));
        return HMACSHA256.HashData(HMACSHA256.HashData(secret.Key, keyHash), data);
    }

    /// <summary>A valid session.</summary>
    /// <param name="Csrf">Its CSRF token.</param>
    /// <param name="Caller">The key that opened it.</param>
    internal sealed record Session(string Csrf, ApiCaller Caller);
}
