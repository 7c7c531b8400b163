using System.Security.Cryptography;
using System.Text;
using Conveyor.Backends;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.Options;
using OtpNet;
using QRCoder;

namespace Conveyor.AspNetCore.Security;

/// <summary>Passwords, recovery codes and roles of dashboard users, shared by the server and the CLI.</summary>
public static class UserCredentials
{
    /// <summary>Recovery codes given at enrolment.</summary>
    public const int RecoveryCodeCount = 10;

    private static readonly PasswordHasher<StoredUser> Hasher = new();

    /// <summary>The roles a user may have: the API key scopes.</summary>
    public static IReadOnlyList<string> Roles => ApiScopes.All;

    /// <summary>Null when <paramref name="password"/> is acceptable, else why not (never the password itself).</summary>
    public static string? PasswordProblem(string? password, int minLength) =>
        password is null || password.Length < minLength
            ? $"a password must be at least {minLength} characters long"
            : password.Trim().Length == 0 ? "a password must not be only spaces" : null;

    /// <summary>The password's hash (ASP.NET Core Identity's PBKDF2 format, salted).</summary>
    public static string HashPassword(string password) => Hasher.HashPassword(null!, password);

    /// <summary>Whether <paramref name="password"/> matches <paramref name="hash"/>.</summary>
    public static bool VerifyPassword(string hash, string password) =>
        Hasher.VerifyHashedPassword(null!, hash, password) != PasswordVerificationResult.Failed;

    /// <summary>A hash no password matches, verified for unknown users so that their sign-in takes as long.</summary>
    public static readonly string DummyHash = HashPassword(Convert.ToHexString(RandomNumberGenerator.GetBytes(16)));

    /// <summary>New recovery codes: <c>xxxxx-xxxxx</c>, 50 random bits each.</summary>
    public static IReadOnlyList<string> NewRecoveryCodes()
    {
        const string alphabet = "abcdefghjkmnpqrstuvwxyz23456789";
        return [.. Enumerable.Range(0, RecoveryCodeCount).Select(_ =>
        {
            var chars = new char[11];
            for (var i = 0; i < chars.Length; i++)
            {
                chars[i] = i == 5 ? '-' : alphabet[RandomNumberGenerator.GetInt32(alphabet.Length)];
            }
            return new string(chars);
        })];
    }

    /// <summary>A recovery code's hash: SHA-256 is enough for 50 random bits tried online under a lockout, and lets a
    /// code be found by its hash.</summary>
    public static string HashRecoveryCode(string code) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(code.Trim().ToLowerInvariant())));
}

/// <summary>What a password sign-in came to.</summary>
internal enum UserSignInResult
{
    /// <summary>Signed in.</summary>
    Succeeded,
    /// <summary>Password right, a TOTP or recovery code is needed (no failure counted).</summary>
    CodeRequired,
    /// <summary>Wrong user, password or code (the answer does not say which).</summary>
    Failed,
    /// <summary>The user is locked out (answered as <see cref="Failed"/>).</summary>
    LockedOut,
}

/// <summary>
/// Dashboard users' sign-in: password, then a TOTP code (RFC 6238, 30 s steps, one step either way) or a single-use
/// recovery code; failures counted on the user and a lockout after <see cref="UserSignInOptions.MaxFailures"/>; TOTP
/// enrolment. Every change is a compare-and-set on the stored user, retried on a conflict.
/// </summary>
internal sealed class DashboardUsers(IConveyorBackend backend, IOptions<ConveyorApiOptions> options, TimeProvider time)
{
    private const int Attempts = 10;

    /// <summary>The store, or null when the backend keeps no users.</summary>
    public IUserStore? Store => backend.Users;

    private UserSignInOptions Options => options.Value.Users;

    /// <summary>Checks a sign-in; <paramref name="code"/> is a TOTP code or a recovery code, or null. The user, when found,
    /// is returned as stored after the attempt; <c>UsedRecoveryCode</c> tells whether a recovery code was spent.</summary>
    public async Task<(UserSignInResult Result, StoredUser? User, bool UsedRecoveryCode)> SignInAsync(string name, string password, string? code,
        CancellationToken cancellationToken)
    {
        if (Store is null || UserNames.Validate(name) is not null
            || await Store.GetUserAsync(name, cancellationToken).ConfigureAwait(false) is not { } user)
        {
            UserCredentials.VerifyPassword(UserCredentials.DummyHash, password);
            return (UserSignInResult.Failed, null, false);
        }
        for (var attempt = 0; attempt < Attempts; attempt++)
        {
            var now = time.GetUtcNow();
            if (user.LockedUntil is { } until && until > now)
            {
                return (UserSignInResult.LockedOut, user, false);
            }
            var passwordOk = UserCredentials.VerifyPassword(user.PasswordHash, password);
            if (passwordOk && user.MfaEnabled && string.IsNullOrWhiteSpace(code))
            {
                return (UserSignInResult.CodeRequired, user, false);
            }
            StoredUser updated;
            var usedRecovery = false;
            var ok = passwordOk;
            if (ok && user.MfaEnabled)
            {
                if (TotpStep(user, code!, now) is { } step)
                {
                    updated = user with { LastTotpStep = step };
                }
                else if (user.RecoveryCodes.Contains(UserCredentials.HashRecoveryCode(code!), StringComparer.Ordinal))
                {
                    var hash = UserCredentials.HashRecoveryCode(code!);
                    updated = user with { RecoveryCodeHashes = [.. user.RecoveryCodes.Where(h => h != hash)] };
                    usedRecovery = true;
                }
                else
                {
                    ok = false;
                    updated = user;
                }
            }
            else
            {
                updated = user;
            }
            if (ok)
            {
                updated = updated with { FailedAttempts = 0, LockedUntil = null };
            }
            else
            {
                var failures = user.FailedAttempts + 1;
                updated = failures >= Options.MaxFailures
                    ? user with { FailedAttempts = 0, LockedUntil = now + Options.LockoutDuration }
                    : user with { FailedAttempts = failures, LockedUntil = null };
            }
            if (updated == user || await Store.UpdateUserAsync(updated, cancellationToken).ConfigureAwait(false))
            {
                var stored = updated == user ? user : updated with { Version = user.Version + 1 };
                return ok ? (UserSignInResult.Succeeded, stored, usedRecovery)
                    : (stored.LockedUntil is not null ? UserSignInResult.LockedOut : UserSignInResult.Failed, stored, false);
            }
            // Changed by a concurrent sign-in: read again and decide again.
            if (await Store.GetUserAsync(name, cancellationToken).ConfigureAwait(false) is not { } again)
            {
                return (UserSignInResult.Failed, null, false);
            }
            user = again;
        }
        return (UserSignInResult.Failed, user, false);
    }

    /// <summary>Starts (or restarts) TOTP enrolment: a new secret stored unconfirmed. The secret (base32), its
    /// <c>otpauth://</c> URI and that URI as an SVG QR code. Null when the user is gone or already enrolled.</summary>
    public async Task<(string Secret, string Uri, string QrSvg)?> BeginEnrolmentAsync(string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(Store);
        for (var attempt = 0; attempt < Attempts; attempt++)
        {
            if (await Store.GetUserAsync(name, cancellationToken).ConfigureAwait(false) is not { } user || user.MfaEnabled)
            {
                return null;
            }
            var secret = Base32Encoding.ToString(KeyGeneration.GenerateRandomKey(20));
            if (await Store.UpdateUserAsync(user with { MfaSecret = secret }, cancellationToken).ConfigureAwait(false))
            {
                var uri = new OtpUri(OtpType.Totp, secret, name, "Conveyor").ToString();
                using var generator = new QRCodeGenerator();
                using var data = generator.CreateQrCode(uri, QRCodeGenerator.ECCLevel.M);
                var svg = new SvgQRCode(data).GetGraphic(4);
                return (secret, uri, svg);
            }
        }
        return null;
    }

    /// <summary>Confirms enrolment with a code of the pending secret: MFA on, new recovery codes (returned in clear this
    /// once, stored hashed). Null when the code is wrong or no enrolment is pending.</summary>
    public async Task<(StoredUser User, IReadOnlyList<string> RecoveryCodes)?> ConfirmEnrolmentAsync(string name, string code, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(Store);
        for (var attempt = 0; attempt < Attempts; attempt++)
        {
            if (await Store.GetUserAsync(name, cancellationToken).ConfigureAwait(false) is not { MfaEnabled: false, MfaSecret: not null } user
                || TotpStep(user, code, time.GetUtcNow()) is not { } step)
            {
                return null;
            }
            var codes = UserCredentials.NewRecoveryCodes();
            var enrolled = user with
            {
                MfaEnabled = true,
                LastTotpStep = step,
                RecoveryCodeHashes = [.. codes.Select(UserCredentials.HashRecoveryCode)],
            };
            if (await Store.UpdateUserAsync(enrolled, cancellationToken).ConfigureAwait(false))
            {
                return (enrolled with { Version = user.Version + 1 }, codes);
            }
        }
        return null;
    }

    /// <summary>Replaces an enrolled user's recovery codes, on a current TOTP code (not a recovery code: losing the codes
    /// must not let them be renewed). The new codes in clear, this once; null when the code is wrong or the user is not
    /// enrolled.</summary>
    public async Task<(StoredUser User, IReadOnlyList<string> RecoveryCodes)?> RenewRecoveryCodesAsync(string name, string code, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(Store);
        for (var attempt = 0; attempt < Attempts; attempt++)
        {
            if (await Store.GetUserAsync(name, cancellationToken).ConfigureAwait(false) is not { MfaEnabled: true } user
                || TotpStep(user, code, time.GetUtcNow()) is not { } step)
            {
                return null;
            }
            var codes = UserCredentials.NewRecoveryCodes();
            var renewed = user with { LastTotpStep = step, RecoveryCodeHashes = [.. codes.Select(UserCredentials.HashRecoveryCode)] };
            if (await Store.UpdateUserAsync(renewed, cancellationToken).ConfigureAwait(false))
            {
                return (renewed with { Version = user.Version + 1 }, codes);
            }
        }
        return null;
    }

    /// <summary>The time step of <paramref name="code"/> when it is a valid TOTP code of the user's secret, one step either
    /// way, newer than the last accepted one (so a code is never accepted twice); else null.</summary>
    private static long? TotpStep(StoredUser user, string code, DateTimeOffset now)
    {
        var digits = code.Trim().Replace(" ", "", StringComparison.Ordinal);
        // A secret still encrypted was not decrypted (its key is no longer configured): no code matches it.
        if (user.MfaSecret is null || Conveyor.Encryption.PayloadCipher.IsEncrypted(user.MfaSecret, json: false)
            || digits.Length != 6 || !digits.All(char.IsAsciiDigit))
        {
            return null;
        }
        var totp = new Totp(Base32Encoding.ToBytes(user.MfaSecret));
        return totp.VerifyTotp(now.UtcDateTime, digits, out var step, new VerificationWindow(previous: 1, future: 1))
            && (user.LastTotpStep is not { } last || step > last) ? step : null;
    }

    /// <summary>The secret a user's sessions are signed with: changes, and so ends them, when the password, role or MFA
    /// state changes; every replica derives the same from the store.</summary>
    public static byte[] SessionSecret(StoredUser user)
    {
        ArgumentNullException.ThrowIfNull(user);
        return SHA256.HashData(Encoding.UTF8.GetBytes($"conveyor-user-session-v1:{user.Name}:{user.Role}:{user.MfaEnabled}:{user.PasswordHash}"));
    }

    /// <summary>A user session's key id: <c>user:name</c> for a full session, <c>user-local:name</c> for an admin without a
    /// second factor signed in on loopback (full there, enrolment only elsewhere), <c>user-enrol:name</c> for an admin who
    /// must enrol first (no scope).</summary>
    public static string SessionId(string name, SessionKind kind) => Prefixes[(int)kind] + name;

    /// <summary>The user name and kind of a user session's key id; null when <paramref name="id"/> is not one.</summary>
    public static (string Name, SessionKind Kind)? ParseSessionId(string id)
    {
        ArgumentNullException.ThrowIfNull(id);
        for (var kind = 0; kind < Prefixes.Length; kind++)
        {
            if (id.StartsWith(Prefixes[kind], StringComparison.Ordinal))
            {
                return (id[Prefixes[kind].Length..], (SessionKind)kind);
            }
        }
        return null;
    }

    /// <summary>Whether <paramref name="keyId"/> is a session valid in full on loopback only.</summary>
    public static bool IsLoopbackOnly(string keyId) => ParseSessionId(keyId) is (_, SessionKind.LoopbackOnly);

    // Indexed by SessionKind; none is a prefix of another.
    private static readonly string[] Prefixes = ["user:", "user-local:", "user-enrol:"];

    /// <summary>The kind of session a sign-in gets: an admin without a second factor gets a full session on loopback (kept
    /// to loopback) and an enrolment-only one elsewhere.</summary>
    public static SessionKind KindFor(StoredUser user, bool fromLoopback)
    {
        ArgumentNullException.ThrowIfNull(user);
        return user.Role != ApiScopes.Admin || user.MfaEnabled ? SessionKind.Full
            : fromLoopback ? SessionKind.LoopbackOnly : SessionKind.EnrolOnly;
    }

    /// <summary>The caller a user's session stands for.</summary>
    public static ApiCaller ToCaller(StoredUser user, SessionKind kind)
    {
        ArgumentNullException.ThrowIfNull(user);
        // enqueue includes read (a user who can enqueue can see what was enqueued); admin includes everything already.
        string[] granted = kind == SessionKind.EnrolOnly ? [] : user.Role == ApiScopes.Enqueue ? [ApiScopes.Read, ApiScopes.Enqueue] : [user.Role];
        var scopes = new HashSet<string>(granted, StringComparer.Ordinal);
        return new ApiCaller(SessionId(user.Name, kind), user.Name, scopes, new HashSet<string>(StringComparer.Ordinal), SessionSecret(user));
    }
}

/// <summary>What a user's session may do.</summary>
internal enum SessionKind
{
    /// <summary>Everything the user's role allows.</summary>
    Full,
    /// <summary>Everything the role allows, from loopback; from elsewhere only <see cref="EnrolOnly"/> (an admin without a
    /// second factor).</summary>
    LoopbackOnly,
    /// <summary>Nothing but enrolling a second factor (an admin without one, off loopback).</summary>
    EnrolOnly,
}
