using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Conveyor.Server.Configuration;

/// <summary>Loads the certificate of <see cref="ServerTlsOptions"/> at start, so that a file that is missing, unreadable,
/// without its key or with the wrong password stops the server with the setting named, before anything listens.</summary>
internal static class ServerCertificate
{
    private const string CertificateSetting = "Conveyor:Tls:CertificateFile (CONVEYOR_TLS__CERTIFICATE_FILE, --tls-cert)";
    private const string KeySetting = "Conveyor:Tls:KeyFile (CONVEYOR_TLS__KEY_FILE, --tls-key)";
    private const string PasswordSetting = "Conveyor:Tls:Password (CONVEYOR_TLS__PASSWORD) or Conveyor:Tls:PasswordFile (CONVEYOR_TLS__PASSWORD_FILE, --tls-password-file)";
    private const string PasswordFileSetting = "Conveyor:Tls:PasswordFile (CONVEYOR_TLS__PASSWORD_FILE, --tls-password-file)";

    /// <summary>The certificate with its private key, and the certificates after it in a PEM file (its chain, which
    /// Kestrel sends along), or null when <see cref="ServerTlsOptions.CertificateFile"/> is not set. Throws
    /// <see cref="ConveyorConfigurationException"/> naming the setting that cannot work (never a password).</summary>
    public static (X509Certificate2 Certificate, X509Certificate2Collection Chain)? Load(ServerTlsOptions tls)
    {
        ArgumentNullException.ThrowIfNull(tls);
        if (tls.HstsMaxAge < TimeSpan.Zero)
        {
            throw new ConveyorConfigurationException($"Conveyor:Tls:HstsMaxAge (CONVEYOR_TLS__HSTS_MAX_AGE) is {tls.HstsMaxAge}: it must be 0 (no header) or more; default 365.00:00:00.");
        }
        if (string.IsNullOrWhiteSpace(tls.CertificateFile))
        {
            if (!string.IsNullOrWhiteSpace(tls.KeyFile) || !string.IsNullOrWhiteSpace(tls.PasswordFile) || !string.IsNullOrEmpty(tls.Password))
            {
                throw new ConveyorConfigurationException($"{KeySetting} or a TLS password is set without a certificate: set {CertificateSetting} too, or neither.");
            }
            return null;
        }
        var password = Password(tls);
        var certificateText = ReadText(tls.CertificateFile, CertificateSetting);
        X509Certificate2 certificate;
        var chain = new X509Certificate2Collection();
        if (certificateText.Contains("-----BEGIN CERTIFICATE-----", StringComparison.Ordinal))
        {
            certificate = LoadPem(tls, certificateText, password);
            try
            {
                chain.ImportFromPem(certificateText);
            }
            catch (CryptographicException ex)
            {
                throw new ConveyorConfigurationException($"{CertificateSetting} '{tls.CertificateFile}' holds a certificate that cannot be read ({ex.Message.TrimEnd('.')}).", ex);
            }
            // The first is the server's own.
            chain.RemoveAt(0);
        }
        else
        {
            if (!string.IsNullOrWhiteSpace(tls.KeyFile))
            {
                throw new ConveyorConfigurationException(
                    $"{CertificateSetting} '{tls.CertificateFile}' is not a PEM certificate, so it is read as PKCS#12 (PFX), which holds its own key: " +
                    $"leave {KeySetting} unset, or give a PEM certificate (-----BEGIN CERTIFICATE-----).");
            }
            try
            {
                certificate = X509CertificateLoader.LoadPkcs12FromFile(tls.CertificateFile, password);
            }
            catch (CryptographicException ex)
            {
                throw new ConveyorConfigurationException(
                    $"{CertificateSetting} '{tls.CertificateFile}' could not be read as a PEM certificate or a PKCS#12 (PFX) file ({ex.Message.TrimEnd('.')}): " +
                    $"a PFX needs its password in {PasswordSetting}.", ex);
            }
        }
        if (!certificate.HasPrivateKey)
        {
            certificate.Dispose();
            throw new ConveyorConfigurationException(
                $"{CertificateSetting} '{tls.CertificateFile}' holds a certificate without its private key: set {KeySetting} to the PEM key file, or use a PFX that holds the key.");
        }
        return (certificate, chain);
    }

    private static X509Certificate2 LoadPem(ServerTlsOptions tls, string certificateText, string? password)
    {
        var keyFile = string.IsNullOrWhiteSpace(tls.KeyFile) ? null : tls.KeyFile;
        var keyText = keyFile is null ? certificateText : ReadText(keyFile, KeySetting);
        if (!keyText.Contains("PRIVATE KEY-----", StringComparison.Ordinal))
        {
            throw new ConveyorConfigurationException(keyFile is null
                ? $"{CertificateSetting} '{tls.CertificateFile}' holds no private key and {KeySetting} is not set: set it to the certificate's PEM key file."
                : $"{KeySetting} '{keyFile}' holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC).");
        }
        var encrypted = keyText.Contains("-----BEGIN ENCRYPTED PRIVATE KEY-----", StringComparison.Ordinal);
        if (encrypted && password is null)
        {
            throw new ConveyorConfigurationException($"{KeySetting} '{keyFile ?? tls.CertificateFile}' is an encrypted key: set its password in {PasswordSetting}.");
        }
        try
        {
            // The certificate alone first, so that what fails after it is the key's.
            using var alone = X509Certificate2.CreateFromPem(certificateText);
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            throw new ConveyorConfigurationException($"{CertificateSetting} '{tls.CertificateFile}' holds no certificate that can be read ({ex.Message.TrimEnd('.')}).", ex);
        }
        try
        {
            return encrypted
                ? X509Certificate2.CreateFromEncryptedPem(certificateText, keyText, password)
                : X509Certificate2.CreateFromPem(certificateText, keyText);
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            // A key of another certificate is an ArgumentException of CopyWithPrivateKey; a bad key or password a CryptographicException.
            var what = encrypted ? "could not be decrypted with the configured password, or does not" : "does not";
            throw new ConveyorConfigurationException(
                $"{KeySetting} '{keyFile ?? tls.CertificateFile}' {what} hold the key of the certificate in {CertificateSetting} ({ex.Message.TrimEnd('.')}).", ex);
        }
    }

    private static string? Password(ServerTlsOptions tls)
    {
        if (string.IsNullOrWhiteSpace(tls.PasswordFile))
        {
            return string.IsNullOrEmpty(tls.Password) ? null : tls.Password;
        }
        if (!string.IsNullOrEmpty(tls.Password))
        {
            throw new ConveyorConfigurationException($"Both Conveyor:Tls:Password (CONVEYOR_TLS__PASSWORD) and {PasswordFileSetting} are set: set one.");
        }
        var text = ReadText(tls.PasswordFile, PasswordFileSetting);
        return text.Split('\n', 2)[0].TrimEnd('\r');
    }

    private static string ReadText(string path, string setting)
    {
        if (Directory.Exists(path))
        {
            throw new ConveyorConfigurationException($"{setting} '{path}' is a folder, not a file.");
        }
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            var reason = ex switch
            {
                FileNotFoundException or DirectoryNotFoundException => "does not exist",
                UnauthorizedAccessException => "cannot be read by this user",
                _ => $"cannot be read ({ex.Message.TrimEnd('.')})",
            };
            throw new ConveyorConfigurationException($"{setting} '{path}' {reason}.", ex);
        }
    }
}
