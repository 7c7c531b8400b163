using Conveyor.Backends;

namespace Conveyor.Testing;

public sealed partial class InMemoryBackend : IApiKeyStore
{
    /// <inheritdoc />
    public IApiKeyStore ApiKeys => this;

    /// <inheritdoc />
    public Task AddApiKeyAsync(StoredApiKey key, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        lock (_storage.Gate)
        {
            if (_storage.ApiKeys.Any(k => k.Id == key.Id || k.Hash == key.Hash))
            {
                throw new InvalidOperationException($"An API key with the id '{key.Id}' or the same hash is stored already.");
            }
            _storage.ApiKeys.Add(Truncate(key));
            return Task.CompletedTask;
        }
    }

    /// <inheritdoc />
    public Task<StoredApiKey?> FindApiKeyAsync(string hash, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(hash);
        lock (_storage.Gate)
        {
            return Task.FromResult(_storage.ApiKeys.Find(k => k.Hash == hash));
        }
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<StoredApiKey>> ListApiKeysAsync(CancellationToken cancellationToken)
    {
        lock (_storage.Gate)
        {
            return Task.FromResult<IReadOnlyList<StoredApiKey>>(_storage.ApiKeys.OrderBy(k => k.CreatedAt).ThenBy(k => k.Id, StringComparer.Ordinal).ToList());
        }
    }

    /// <inheritdoc />
    public Task<bool> RevokeApiKeyAsync(string id, DateTimeOffset at, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(id);
        lock (_storage.Gate)
        {
            var index = _storage.ApiKeys.FindIndex(k => k.Id == id && k.RevokedAt is null);
            if (index < 0)
            {
                return Task.FromResult(false);
            }
            _storage.ApiKeys[index] = _storage.ApiKeys[index] with { RevokedAt = Millis(at) };
            return Task.FromResult(true);
        }
    }

    /// <inheritdoc />
    public Task RecordApiKeyUsesAsync(IReadOnlyDictionary<string, DateTimeOffset> lastUses, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(lastUses);
        lock (_storage.Gate)
        {
            for (var i = 0; i < _storage.ApiKeys.Count; i++)
            {
                var key = _storage.ApiKeys[i];
                if (lastUses.TryGetValue(key.Id, out var at) && (key.LastUsedAt is null || key.LastUsedAt < Millis(at)))
                {
                    _storage.ApiKeys[i] = key with { LastUsedAt = Millis(at) };
                }
            }
            return Task.CompletedTask;
        }
    }

    // The other backends keep milliseconds; so does this one, so that the suite's comparisons hold for all.
    private static DateTimeOffset Millis(DateTimeOffset at) => DateTimeOffset.FromUnixTimeMilliseconds(at.ToUnixTimeMilliseconds());

    private static StoredApiKey Truncate(StoredApiKey key) => key with
    {
        Scopes = [.. key.Scopes],
        Queues = [.. key.Queues],
        CreatedAt = Millis(key.CreatedAt),
        LastUsedAt = key.LastUsedAt is { } used ? Millis(used) : null,
        RevokedAt = key.RevokedAt is { } revoked ? Millis(revoked) : null,
    };
}
