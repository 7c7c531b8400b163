using System.Text.Json;
using Conveyor.Backends;
using StackExchange.Redis;

namespace Conveyor.Redis;

/// <summary>The dashboard's users: <c>B users</c>, a hash of name → the user as JSON (its version included), changed by
/// compare-and-set in a script.</summary>
public sealed partial class RedisBackend : IUserStore
{
    // ARGV: B, name, expected version, new JSON. Replaces the user if its stored version is the expected one.
    private const string UpdateUserScript = """
        local b = ARGV[1]
        local current = redis.call('HGET', b .. 'users', ARGV[2])
        if not current then return 0 end
        if tostring(cjson.decode(current)['version']) ~= ARGV[3] then return 0 end
        redis.call('HSET', b .. 'users', ARGV[2], ARGV[4])
        return 1
        """;

    private static readonly JsonSerializerOptions UserJsonOptions = new(JsonSerializerDefaults.Web);

    /// <inheritdoc />
    public IUserStore Users => this;

    /// <inheritdoc />
    public async Task<bool> AddUserAsync(StoredUser user, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(user);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        return await db.HashSetAsync(_base + "users", user.Name, Json(user, user.Version, user.CreatedAt), When.NotExists).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<StoredUser?> GetUserAsync(string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var value = await db.HashGetAsync(_base + "users", name).ConfigureAwait(false);
        return value.IsNull ? null : Parse(value!);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<StoredUser>> ListUsersAsync(CancellationToken cancellationToken)
    {
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var values = await db.HashValuesAsync(_base + "users").ConfigureAwait(false);
        return [.. values.Select(v => Parse(v!)).OrderBy(u => u.Name, StringComparer.Ordinal)];
    }

    /// <inheritdoc />
    public async Task<bool> UpdateUserAsync(StoredUser user, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(user);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var current = await GetUserAsync(user.Name, cancellationToken).ConfigureAwait(false);
        if (current is null || current.Version != user.Version)
        {
            return false;
        }
        // The script checks the version again: another writer may have come between the read and the write.
        var result = await RunAsync(db, UpdateUserScript,
            [_base, user.Name, user.Version, Json(user, user.Version + 1, current.CreatedAt)]).ConfigureAwait(false);
        return (long)result == 1;
    }

    /// <inheritdoc />
    public async Task<bool> RemoveUserAsync(string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        return await db.HashDeleteAsync(_base + "users", name).ConfigureAwait(false);
    }

    // Kept as the SQL backends keep it: times to the millisecond.
    private static string Json(StoredUser user, long version, DateTimeOffset createdAt) => JsonSerializer.Serialize(user with
    {
        Version = version,
        CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(createdAt.ToUnixTimeMilliseconds()),
        LockedUntil = user.LockedUntil is { } locked ? DateTimeOffset.FromUnixTimeMilliseconds(locked.ToUnixTimeMilliseconds()) : null,
        RecoveryCodeHashes = [.. user.RecoveryCodes],
    }, UserJsonOptions);

    private static StoredUser Parse(string json) =>
        JsonSerializer.Deserialize<StoredUser>(json, UserJsonOptions) ?? throw new InvalidDataException("A stored user is null.");
}
