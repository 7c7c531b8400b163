namespace Conveyor.Backends;

/// <summary>A dashboard user: a name, a role, a password hash and an optional TOTP second factor. Never holds a password,
/// a recovery code or (once encrypted by the server) a TOTP secret in clear.</summary>
/// <param name="Name">The sign-in name: unique, compared ordinally (<see cref="UserNames.Validate"/>).</param>
/// <param name="Role">One of the API key scopes (<c>read</c>, <c>enqueue</c>, <c>admin</c>); a session gets that scope
/// and the ones it implies.</param>
/// <param name="PasswordHash">The password's hash in the hasher's own self-describing format.</param>
/// <param name="CreatedAt">When the user was added (kept to the millisecond).</param>
/// <param name="Version">Bumped by every <see cref="IUserStore.UpdateUserAsync"/>: the compare-and-set token.</param>
/// <param name="MfaSecret">The TOTP secret as the server stores it (encrypted when a payload key is configured), or null.
/// Set while enrolling, before <paramref name="MfaEnabled"/>.</param>
/// <param name="MfaEnabled">Whether the TOTP factor is confirmed and required at sign-in.</param>
/// <param name="RecoveryCodeHashes">The hashes of the unused recovery codes (each used once, then removed).</param>
/// <param name="FailedAttempts">Failed sign-ins since the last success or lockout.</param>
/// <param name="LockedUntil">Sign-ins are refused until this time, or null.</param>
/// <param name="LastTotpStep">The RFC 6238 time step of the last accepted code, so that a code is never accepted twice.</param>
public sealed record StoredUser(string Name, string Role, string PasswordHash, DateTimeOffset CreatedAt, long Version = 1,
    string? MfaSecret = null, bool MfaEnabled = false, IReadOnlyList<string>? RecoveryCodeHashes = null, int FailedAttempts = 0,
    DateTimeOffset? LockedUntil = null, long? LastTotpStep = null)
{
    /// <summary>The recovery code hashes, never null.</summary>
    public IReadOnlyList<string> RecoveryCodes => RecoveryCodeHashes ?? [];

    /// <summary>Joins recovery code hashes for a single text column (hashes hold no space).</summary>
    public static string JoinCodes(IReadOnlyList<string> hashes) => string.Join(' ', hashes);

    /// <summary>Splits what <see cref="JoinCodes"/> joined.</summary>
    public static IReadOnlyList<string> SplitCodes(string? text) =>
        string.IsNullOrEmpty(text) ? [] : text.Split(' ', StringSplitOptions.RemoveEmptyEntries);
}

/// <summary>What a user name may be.</summary>
public static class UserNames
{
    /// <summary>Longest name.</summary>
    public const int MaxLength = 64;

    /// <summary>Null when <paramref name="name"/> is a valid user name, else why not.</summary>
    public static string? Validate(string? name)
    {
        if (string.IsNullOrEmpty(name))
        {
            return "a user name is required";
        }
        if (name.Length > MaxLength)
        {
            return $"a user name is at most {MaxLength} characters";
        }
        foreach (var c in name)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' or '@'))
            {
                return "a user name holds only ASCII letters, digits, '.', '_', '-' and '@'";
            }
        }
        return null;
    }
}

/// <summary>The dashboard's users (store role). Every change other than add and remove is a compare-and-set on
/// <see cref="StoredUser.Version"/>, so that concurrent sign-ins cannot lose a failure count or reuse a recovery
/// code.</summary>
public interface IUserStore
{
    /// <summary>Stores a new user; false (and nothing changed) when the name is taken.</summary>
    Task<bool> AddUserAsync(StoredUser user, CancellationToken cancellationToken);

    /// <summary>The user of that name, or null.</summary>
    Task<StoredUser?> GetUserAsync(string name, CancellationToken cancellationToken);

    /// <summary>Every user, by name (ordinal).</summary>
    Task<IReadOnlyList<StoredUser>> ListUsersAsync(CancellationToken cancellationToken);

    /// <summary>Replaces the user's role, hash, MFA fields, failures and lock with <paramref name="user"/>'s, if its stored
    /// version is still <paramref name="user"/>'s <see cref="StoredUser.Version"/>; the stored version is then one more.
    /// False when the user is gone or was changed since it was read (read it again and retry).</summary>
    Task<bool> UpdateUserAsync(StoredUser user, CancellationToken cancellationToken);

    /// <summary>Removes the user; false when there was none.</summary>
    Task<bool> RemoveUserAsync(string name, CancellationToken cancellationToken);
}
