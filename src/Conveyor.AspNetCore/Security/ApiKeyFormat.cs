using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;

namespace Conveyor.AspNetCore.Security;

/// <summary>
/// How keys are made and kept. A key is <c>cvk_</c> and 32 random bytes in base64url (47 characters); the backend keeps
/// only its SHA-256. A slow password hash (PBKDF2, Argon2) would add nothing: it protects low-entropy secrets from
/// guessing, and 256 random bits cannot be guessed whatever the hash; a fast hash keeps checking a key cheap.
/// </summary>
public static class ApiKeyFormat
{
    /// <summary>The prefix of generated keys, so that secret scanners and people recognise them.</summary>
    public const string Prefix = "cvk_";

    /// <summary>Fewest characters a key may have, configured or generated.</summary>
    public const int MinimumLength = 32;

    /// <summary>A new key: <see cref="Prefix"/> and 32 random bytes in base64url.</summary>
    public static string NewKey() => Prefix + Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(32));

    /// <summary>A new key id: 12 random hex characters, public (listed, used to revoke).</summary>
    public static string NewId() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6));

    /// <summary>SHA-256 of the key's UTF-8 text.</summary>
    public static byte[] Hash(string key) => SHA256.HashData(Encoding.UTF8.GetBytes(key ?? throw new ArgumentNullException(nameof(key))));

    /// <summary>SHA-256 of the key's UTF-8 text in lower-case hex, as backends store it.</summary>
    public static string HashHex(string key) => Convert.ToHexStringLower(Hash(key));
}

/// <summary>A key about to be stored and its secret, shown once.</summary>
/// <param name="Stored">What the backend keeps.</param>
/// <param name="Key">The key itself: printed once, never stored.</param>
public sealed record NewApiKey(Conveyor.Backends.StoredApiKey Stored, string Key)
{
    /// <summary>Longest key name, in characters.</summary>
    public const int MaxNameLength = 200;

    /// <summary>A new key with these settings; check them first with <see cref="Problems"/>.</summary>
    public static NewApiKey Create(string? name, IEnumerable<string> scopes, IEnumerable<string>? queues, DateTimeOffset now)
    {
        var key = ApiKeyFormat.NewKey();
        var stored = new Conveyor.Backends.StoredApiKey(ApiKeyFormat.NewId(), name?.Trim() ?? "", ApiKeyFormat.HashHex(key),
            scopes.Distinct(StringComparer.Ordinal).ToList(), (queues ?? []).Distinct(StringComparer.Ordinal).ToList(),
            DateTimeOffset.FromUnixTimeMilliseconds(now.ToUnixTimeMilliseconds()));
        return new NewApiKey(stored, key);
    }

    /// <summary>What is wrong with these settings, by field (<c>scopes</c>, <c>queues[1]</c>, <c>name</c>); empty when they can be used.</summary>
    public static IReadOnlyList<(string Field, string Message)> Problems(string? name, IReadOnlyList<string> scopes, IReadOnlyList<string>? queues)
    {
        ArgumentNullException.ThrowIfNull(scopes);
        var problems = new List<(string, string)>();
        if (scopes.Count == 0)
        {
            problems.Add(("scopes", $"needs at least one scope: {string.Join(", ", ApiScopes.All)}"));
        }
        for (var i = 0; i < scopes.Count; i++)
        {
            if (!ApiScopes.IsScope(scopes[i]))
            {
                problems.Add(($"scopes[{i}]", $"'{scopes[i]}' is not a scope; use {string.Join(", ", ApiScopes.All)}"));
            }
        }
        for (var i = 0; i < (queues?.Count ?? 0); i++)
        {
            var queue = queues![i];
            if (string.IsNullOrWhiteSpace(queue) || queue.Contains(',', StringComparison.Ordinal) || queue.Length > 200)
            {
                problems.Add(($"queues[{i}]", "must be a queue name: 1 to 200 characters, no comma"));
            }
        }
        if (name is { Length: > MaxNameLength })
        {
            problems.Add(("name", $"is at most {MaxNameLength} characters"));
        }
        return problems;
    }
}
