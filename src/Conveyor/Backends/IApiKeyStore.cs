namespace Conveyor.Backends;

/// <summary>An API key kept in the backend: never the key itself, only its SHA-256 hash.</summary>
/// <param name="Id">Short public identifier (shown by <c>conveyor keys list</c>, used to revoke); unique.</param>
/// <param name="Name">What the operator called it; may be empty.</param>
/// <param name="Hash">Lower-case hex SHA-256 of the key's UTF-8 text; unique.</param>
/// <param name="Scopes">What it may do: <c>read</c>, <c>enqueue</c>, <c>admin</c>.</param>
/// <param name="Queues">The queues it is limited to; empty for every queue.</param>
/// <param name="CreatedAt">When it was created.</param>
/// <param name="LastUsedAt">When it was last accepted, as recorded (in batches, so up to a minute late); null if never.</param>
/// <param name="RevokedAt">When it was revoked; null while it is valid.</param>
public sealed record StoredApiKey(string Id, string Name, string Hash, IReadOnlyList<string> Scopes, IReadOnlyList<string> Queues,
    DateTimeOffset CreatedAt, DateTimeOffset? LastUsedAt = null, DateTimeOffset? RevokedAt = null)
{
    /// <summary>The comma-joined form backends store lists in (scopes and queue names hold no comma).</summary>
    public static string Join(IReadOnlyList<string> values) => string.Join(',', values ?? []);

    /// <summary>The list of a comma-joined stored value.</summary>
    public static IReadOnlyList<string> Split(string? value) =>
        string.IsNullOrEmpty(value) ? [] : value.Split(',', StringSplitOptions.RemoveEmptyEntries);

    /// <summary>Records compare by value, lists included (for tests and caches).</summary>
    public bool Equals(StoredApiKey? other) =>
        other is not null && Id == other.Id && Name == other.Name && Hash == other.Hash
        && Scopes.SequenceEqual(other.Scopes) && Queues.SequenceEqual(other.Queues)
        && CreatedAt == other.CreatedAt && LastUsedAt == other.LastUsedAt && RevokedAt == other.RevokedAt;

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Id, Hash);
}

/// <summary>
/// The API keys part of the store role: keys created with <c>conveyor keys create</c> or <c>POST /api/v1/keys</c>, found
/// by their hash when a request presents one. Times are kept to the millisecond.
/// </summary>
public interface IApiKeyStore
{
    /// <summary>Stores a new key. Throws <see cref="InvalidOperationException"/> when its id or hash is taken.</summary>
    Task AddApiKeyAsync(StoredApiKey key, CancellationToken cancellationToken);

    /// <summary>The key whose hash is <paramref name="hash"/> (revoked or not), or null.</summary>
    Task<StoredApiKey?> FindApiKeyAsync(string hash, CancellationToken cancellationToken);

    /// <summary>Every key, revoked ones included, oldest first.</summary>
    Task<IReadOnlyList<StoredApiKey>> ListApiKeysAsync(CancellationToken cancellationToken);

    /// <summary>Marks the key revoked at <paramref name="at"/>; false when there is no such key or it was revoked already.</summary>
    Task<bool> RevokeApiKeyAsync(string id, DateTimeOffset at, CancellationToken cancellationToken);

    /// <summary>Records when each key was last used, in one call for many keys; a time earlier than the one stored is ignored.
    /// Ids that are not stored are ignored.</summary>
    Task RecordApiKeyUsesAsync(IReadOnlyDictionary<string, DateTimeOffset> lastUses, CancellationToken cancellationToken);
}
