using Conveyor.Backends;

namespace Conveyor.Testing;

public sealed partial class InMemoryBackend : IUserStore
{
    /// <inheritdoc />
    public IUserStore Users => this;

    /// <inheritdoc />
    public Task<bool> AddUserAsync(StoredUser user, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(user);
        lock (_storage.Gate)
        {
            return Task.FromResult(_storage.Users.TryAdd(user.Name, Stored(user, user.Version)));
        }
    }

    /// <inheritdoc />
    public Task<StoredUser?> GetUserAsync(string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        lock (_storage.Gate)
        {
            return Task.FromResult(_storage.Users.GetValueOrDefault(name));
        }
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<StoredUser>> ListUsersAsync(CancellationToken cancellationToken)
    {
        lock (_storage.Gate)
        {
            return Task.FromResult<IReadOnlyList<StoredUser>>([.. _storage.Users.Values]);
        }
    }

    /// <inheritdoc />
    public Task<bool> UpdateUserAsync(StoredUser user, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(user);
        lock (_storage.Gate)
        {
            if (!_storage.Users.TryGetValue(user.Name, out var current) || current.Version != user.Version)
            {
                return Task.FromResult(false);
            }
            _storage.Users[user.Name] = Stored(user, user.Version + 1) with { CreatedAt = current.CreatedAt };
            return Task.FromResult(true);
        }
    }

    /// <inheritdoc />
    public Task<bool> RemoveUserAsync(string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        lock (_storage.Gate)
        {
            return Task.FromResult(_storage.Users.Remove(name));
        }
    }

    // Kept as the SQL backends keep it: times to the millisecond, the code list copied.
    private static StoredUser Stored(StoredUser user, long version) => user with
    {
        Version = version,
        CreatedAt = Millis(user.CreatedAt),
        LockedUntil = user.LockedUntil is { } locked ? Millis(locked) : null,
        RecoveryCodeHashes = [.. user.RecoveryCodes],
    };
}
