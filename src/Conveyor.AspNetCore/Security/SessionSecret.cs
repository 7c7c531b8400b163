using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Conveyor.AspNetCore.Security;

/// <summary>
/// The server's own secret, mixed into the MAC of every dashboard session: <see cref="ConveyorApiOptions.SessionSecret"/>
/// (<c>CONVEYOR_SESSION_SECRET</c>) or the first line of <see cref="ConveyorApiOptions.SessionSecretFile"/>, at least 32
/// characters, the same on every replica; when neither is set, 32 random bytes drawn at start, so that sessions end when
/// the process does and are not accepted by other replicas.
/// <para>
/// Why: a session's other key material (the hash of the API key that opened it, or the user's stored name, role and
/// password hash) is what the database keeps. Without a secret that is not in the database, anyone who can read it (a
/// backup, a replica, a leaked dump) could sign admin sessions.
/// </para>
/// </summary>
internal sealed class SessionSecret
{
    /// <summary>Shortest secret accepted, in characters.</summary>
    public const int MinimumLength = 32;

    /// <summary>How the secret is named in errors and in <c>conveyor doctor</c>.</summary>
    public const string Setting = "CONVEYOR_SESSION_SECRET or CONVEYOR_SESSION_SECRET_FILE (Conveyor:SessionSecret, Conveyor:SessionSecretFile, --session-secret-file)";

    private SessionSecret(byte[] key, bool ephemeral)
    {
        Key = key;
        Ephemeral = ephemeral;
    }

    /// <summary>The key the sessions' MAC keys are derived from (the SHA-256 of the configured secret, or random bytes).</summary>
    public byte[] Key { get; }

    /// <summary>Whether the secret was drawn at random at start (none configured).</summary>
    public bool Ephemeral { get; }

    /// <summary>The configured secret, or a random one when none is configured. Throws <see cref="InvalidOperationException"/>
    /// naming the setting (never the secret) when both are set, the file cannot be read, or the secret is too short.</summary>
    public static SessionSecret From(ConveyorApiOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var inline = options.SessionSecret?.Trim();
        var file = options.SessionSecretFile;
        if (!string.IsNullOrEmpty(inline) && !string.IsNullOrWhiteSpace(file))
        {
            throw new InvalidOperationException($"Conveyor:SessionSecret and Conveyor:SessionSecretFile are both set; set one of {Setting}.");
        }
        string? secret = inline;
        var where = "Conveyor:SessionSecret (CONVEYOR_SESSION_SECRET)";
        if (!string.IsNullOrWhiteSpace(file))
        {
            where = $"Conveyor:SessionSecretFile (CONVEYOR_SESSION_SECRET_FILE, --session-secret-file) '{file}'";
            try
            {
                secret = File.ReadLines(file).Select(l => l.Trim()).FirstOrDefault(l => l.Length > 0 && !l.StartsWith('#'));
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new InvalidOperationException($"{where} cannot be read: {ex.Message}", ex);
            }
            if (secret is null)
            {
                throw new InvalidOperationException($"{where} holds no secret: write one line of at least {MinimumLength} random characters " +
                    "(openssl rand -base64 48).");
            }
        }
        if (string.IsNullOrEmpty(secret))
        {
            return new SessionSecret(RandomNumberGenerator.GetBytes(32), ephemeral: true);
        }
        if (secret.Length < MinimumLength)
        {
            throw new InvalidOperationException(
                $"{where} is {secret.Length.ToString(CultureInfo.InvariantCulture)} characters long; a session secret needs at least " +
                $"{MinimumLength.ToString(CultureInfo.InvariantCulture)} (openssl rand -base64 48).");
        }
        return new SessionSecret(SHA256.HashData(Encoding.UTF8.GetBytes(secret)), ephemeral: false);
    }
}
