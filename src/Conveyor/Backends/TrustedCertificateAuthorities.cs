using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Conveyor.Backends;

/// <summary>
/// The certificate authorities of a PEM file that a backend trusts, instead of the system's roots, for its server's TLS
/// certificate: a private CA (<c>sslrootcert=</c> in a PostgreSQL URL, <c>ssl_ca_certs=</c> in a Redis one,
/// <c>cacertfile=</c> in an AMQP one; docs/security.md). The server's certificate must chain to one of them and, unless
/// the caller says otherwise, hold the host name the client connected to; anything else ends the handshake with an
/// <see cref="AuthenticationException"/> that names the setting, so that a wrong CA or host name says what to change.
/// </summary>
public sealed class TrustedCertificateAuthorities
{
    private readonly X509Certificate2Collection _roots;

    private TrustedCertificateAuthorities(string path, string setting, X509Certificate2Collection roots)
    {
        Path = path;
        Setting = setting;
        _roots = roots;
    }

    /// <summary>The PEM file the authorities came from.</summary>
    public string Path { get; }

    /// <summary>The setting that named the file, as errors name it (<c>REDIS_URL ssl_ca_certs</c>).</summary>
    public string Setting { get; }

    /// <summary>Reads every certificate of the PEM file <paramref name="path"/>; throws <see cref="ArgumentException"/>
    /// naming <paramref name="setting"/> when the file cannot be read or holds no certificate: never a silent fallback
    /// to the system's roots.</summary>
    public static TrustedCertificateAuthorities Load(string path, string setting)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentException.ThrowIfNullOrWhiteSpace(setting);
        var roots = new X509Certificate2Collection();
        try
        {
            roots.ImportFromPemFile(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or CryptographicException)
        {
            throw new ArgumentException($"{setting}={path}: the certificate authority file cannot be read ({ex.Message}).", ex);
        }
        if (roots.Count == 0)
        {
            throw new ArgumentException($"{setting}={path}: the file holds no PEM certificate (-----BEGIN CERTIFICATE-----).");
        }
        return new TrustedCertificateAuthorities(path, setting, roots);
    }

    /// <summary>Why the server's certificate is not trusted, or null when it is: it chains to one of these authorities
    /// (the server's intermediates from <paramref name="chain"/> may help) and, when <paramref name="checkHostName"/>, TLS
    /// found it names the host (<paramref name="host"/>, for the message).</summary>
    /// <remarks>Revocation is not checked: private CAs seldom publish revocation lists, and replacing the file is how
    /// trust in one is withdrawn.</remarks>
    public string? Check(X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors, string host, bool checkHostName = true)
    {
        if (certificate is null || errors.HasFlag(SslPolicyErrors.RemoteCertificateNotAvailable))
        {
            return $"the server at {host} sent no certificate";
        }
        // TLS hands over an X509Certificate2; a copy (disposed here) only for a caller that did not.
        using var copy = certificate is X509Certificate2 ? null : new X509Certificate2(certificate);
        var server = copy ?? (X509Certificate2)certificate;
        if (checkHostName && errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch))
        {
            return $"the server's certificate ({server.Subject}) does not name '{host}', the host in the URL: connect by a name or address the certificate holds";
        }
        using var ownChain = new X509Chain();
        ownChain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        ownChain.ChainPolicy.CustomTrustStore.AddRange(_roots);
        ownChain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (chain is not null)
        {
            ownChain.ChainPolicy.ExtraStore.AddRange(chain.ChainPolicy.ExtraStore);
        }
        if (ownChain.Build(server))
        {
            return null;
        }
        var statuses = string.Join(", ", ownChain.ChainStatus.Select(s => s.Status.ToString()).Distinct());
        return $"the server's certificate ({server.Subject}, issued by {server.Issuer}) does not chain to a certificate authority of {Setting}={Path} ({statuses})";
    }

    /// <summary>The message of the last refusal by a callback of <see cref="CreateCallback"/>, or null: for a client that
    /// reports a failed handshake without its cause.</summary>
    public string? LastRefusal => Volatile.Read(ref _lastRefusal);

    private string? _lastRefusal;

    /// <summary>A TLS validation callback for a connection to <paramref name="host"/> that accepts what <see cref="Check"/>
    /// trusts and otherwise throws an <see cref="AuthenticationException"/> saying why and naming the setting.</summary>
    public RemoteCertificateValidationCallback CreateCallback(string engine, string host, bool checkHostName = true) =>
        new Validation(this, engine, host, checkHostName).Validate;

    private void Refused(string refusal) => Volatile.Write(ref _lastRefusal, refusal);

    private sealed class Validation(TrustedCertificateAuthorities authorities, string engine, string host, bool checkHostName)
    {
        public bool Validate(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
        {
            var reason = authorities.Check(certificate, chain, errors, host, checkHostName);
            if (reason is not null)
            {
                var refusal = $"TLS to {engine} at {host} refused: {reason}.";
                authorities.Refused(refusal);
                throw new AuthenticationException(refusal);
            }
            return reason is null;
        }
    }
}
