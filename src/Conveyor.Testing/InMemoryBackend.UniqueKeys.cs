using Conveyor.Backends;

namespace Conveyor.Testing;

public sealed partial class InMemoryBackend
{
    /// <inheritdoc />
    public Task<UniqueClaim?> GetUniqueClaimAsync(string key, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        lock (_storage.Gate)
        {
            return Task.FromResult(_storage.UniqueKeys.GetValueOrDefault(key));
        }
    }

    /// <inheritdoc />
    public Task<bool> TryClaimUniqueKeyAsync(UniqueClaim claim, Guid? replacing, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(claim);
        lock (_storage.Gate)
        {
            var exists = _storage.UniqueKeys.TryGetValue(claim.Key, out var current);
            if (replacing is null ? exists : !exists || current!.TaskId != replacing)
            {
                return Task.FromResult(false);
            }
            _storage.UniqueKeys[claim.Key] = claim;
            return Task.FromResult(true);
        }
    }

    /// <inheritdoc />
    public Task ReleaseUniqueKeyAsync(string key, Guid taskId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        lock (_storage.Gate)
        {
            if (_storage.UniqueKeys.TryGetValue(key, out var current) && current.TaskId == taskId)
            {
                _storage.UniqueKeys.Remove(key);
            }
        }
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task<UniqueClaimPage> ListUniqueClaimsAsync(string? cursor, int limit, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        lock (_storage.Gate)
        {
            var claims = _storage.UniqueKeys.Values
                .Where(c => cursor is null || string.CompareOrdinal(c.Key, cursor) > 0)
                .OrderBy(c => c.Key, StringComparer.Ordinal)
                .Take(limit)
                .ToList();
            return Task.FromResult(new UniqueClaimPage(claims, claims.Count < limit ? null : claims[^1].Key));
        }
    }
}
