using System.Security.Claims;

namespace Conveyor.AspNetCore.Security;

/// <summary>Who an accepted key or session stands for.</summary>
/// <param name="KeyId">The key's id: a stored key's id, or <c>config-…</c> for a key from configuration.</param>
/// <param name="Name">The key's name; may be empty.</param>
/// <param name="Scopes">Its scopes (<see cref="ApiScopes"/>).</param>
/// <param name="Queues">The queues it is limited to; empty for every queue.</param>
/// <param name="Hash">SHA-256 of the key: the secret that signs the dashboard sessions it opens.</param>
internal sealed record ApiCaller(string KeyId, string Name, IReadOnlySet<string> Scopes, IReadOnlySet<string> Queues, byte[] Hash)
{
    /// <summary>The caller of a server without keys: everything, on every queue.</summary>
    public static readonly ApiCaller Open = new("open", "", new HashSet<string>(ApiScopes.All, StringComparer.Ordinal), new HashSet<string>(StringComparer.Ordinal), []);

    /// <summary>Whether it may do what <paramref name="scope"/> allows (admin allows everything).</summary>
    public bool Has(string scope) => Scopes.Contains(scope) || Scopes.Contains(ApiScopes.Admin);

    /// <summary>Its claims, under <see cref="ApiScopes.Scheme"/>.</summary>
    public ClaimsPrincipal ToPrincipal()
    {
        var claims = new List<Claim> { new(ApiScopes.KeyClaim, KeyId), new(ClaimTypes.Name, Name.Length > 0 ? Name : KeyId) };
        claims.AddRange(Scopes.Select(s => new Claim(ApiScopes.ScopeClaim, s)));
        claims.AddRange(Queues.Select(q => new Claim(ApiScopes.QueueClaim, q)));
        return new ClaimsPrincipal(new ClaimsIdentity(claims, ApiScopes.Scheme));
    }
}

/// <summary>The queue limits of the request's caller, read from its claims.</summary>
public static class ApiQueueAccess
{
    /// <summary>The queues the caller is limited to; empty when it may use every queue (or the API has no keys).</summary>
    public static IReadOnlySet<string> LimitedTo(ClaimsPrincipal user)
    {
        ArgumentNullException.ThrowIfNull(user);
        return user.FindAll(ApiScopes.QueueClaim).Select(c => c.Value).ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>Whether the caller may use <paramref name="queue"/>.</summary>
    public static bool Allows(ClaimsPrincipal user, string queue)
    {
        var queues = LimitedTo(user);
        return queues.Count == 0 || queues.Contains(queue);
    }
}
