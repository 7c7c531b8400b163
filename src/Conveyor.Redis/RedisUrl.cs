using System.Globalization;
using Conveyor.Backends;
using StackExchange.Redis;

namespace Conveyor.Redis;

/// <summary>Turns <c>redis://</c> and <c>rediss://</c> URLs (or StackExchange.Redis configuration strings) into options.</summary>
public static class RedisUrl
{
    /// <summary>The query parameter of a <c>rediss://</c> URL naming the PEM file of the certificate authorities that
    /// sign the server's certificate, instead of the system's (redis-py's and Celery's name).</summary>
    public const string CaCertificatesParameter = "ssl_ca_certs";

    /// <summary>Parses <paramref name="configuration"/>: a URL <c>redis[s]://[[user]:password@]host[:port][/db][?ssl_ca_certs=/path/ca.pem]</c>
    /// (port 6379 by default, TLS for <c>rediss</c>, verified against the system's roots or the CA file of
    /// <c>ssl_ca_certs</c>, and always for the URL's host) or a StackExchange.Redis configuration string.
    /// Throws <see cref="FormatException"/> for a URL that cannot work, <see cref="ArgumentException"/> for a CA file
    /// that cannot be read.</summary>
    public static ConfigurationOptions Parse(string configuration) => Parse(configuration, out _);

    /// <summary>Parses <paramref name="configuration"/> as <see cref="Parse(string)"/> does, and gives the certificate
    /// authorities of <c>ssl_ca_certs</c> (null without), whose last refusal says why a TLS handshake failed.</summary>
    public static ConfigurationOptions Parse(string configuration, out TrustedCertificateAuthorities? authorities)
    {
        authorities = null;
        ArgumentException.ThrowIfNullOrWhiteSpace(configuration);
        ConfigurationOptions options;
        if (configuration.StartsWith("redis://", StringComparison.OrdinalIgnoreCase)
            || configuration.StartsWith("rediss://", StringComparison.OrdinalIgnoreCase))
        {
            if (!Uri.TryCreate(configuration, UriKind.Absolute, out var uri) || string.IsNullOrEmpty(uri.Host))
            {
                throw new FormatException($"'{Redact(configuration)}' is not a valid Redis URL: expected redis[s]://[[user]:password@]host[:port][/db]");
            }
            options = new ConfigurationOptions { Ssl = uri.Scheme.Equals("rediss", StringComparison.OrdinalIgnoreCase) };
            options.EndPoints.Add(uri.Host, uri.IsDefaultPort || uri.Port <= 0 ? 6379 : uri.Port);
            if (options.Ssl)
            {
                options.SslHost = uri.Host;
            }
            if (!string.IsNullOrEmpty(uri.UserInfo))
            {
                var colon = uri.UserInfo.IndexOf(':', StringComparison.Ordinal);
                var user = Uri.UnescapeDataString(colon < 0 ? string.Empty : uri.UserInfo[..colon]);
                var password = Uri.UnescapeDataString(colon < 0 ? uri.UserInfo : uri.UserInfo[(colon + 1)..]);
                if (user.Length > 0)
                {
                    options.User = user;
                }
                if (password.Length > 0)
                {
                    options.Password = password;
                }
            }
            var path = uri.AbsolutePath.Trim('/');
            if (path.Length > 0)
            {
                if (!int.TryParse(path, NumberStyles.None, CultureInfo.InvariantCulture, out var db))
                {
                    throw new FormatException($"'{Redact(configuration)}': the path must be a database number, such as /0");
                }
                options.DefaultDatabase = db;
            }
            foreach (var pair in uri.Query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
            {
                var equals = pair.IndexOf('=', StringComparison.Ordinal);
                var key = Uri.UnescapeDataString(equals < 0 ? pair : pair[..equals]);
                var value = equals < 0 ? "" : Uri.UnescapeDataString(pair[(equals + 1)..]);
                // An unknown parameter is refused rather than ignored: a setting the user believes in must not silently do nothing.
                if (!key.Equals(CaCertificatesParameter, StringComparison.OrdinalIgnoreCase))
                {
                    throw new FormatException($"Redis URL parameter '{key}' is not known; the one known is {CaCertificatesParameter}=/path/ca.pem (with rediss://).");
                }
                if (!options.Ssl)
                {
                    throw new FormatException($"Redis URL parameter {CaCertificatesParameter} needs TLS: use rediss:// instead of redis://.");
                }
                authorities = TrustedCertificateAuthorities.Load(value, CaCertificatesParameter);
                options.CertificateValidation += authorities.CreateCallback("Redis", uri.Host);
            }
        }
        else
        {
            options = ConfigurationOptions.Parse(configuration);
        }
        // Start even when Redis is down, and reconnect in the background with backoff.
        options.AbortOnConnectFail = false;
        // No admin commands on the connection tasks travel through (FLUSHALL, CONFIG SET, …): the settings check opens
        // its own short-lived connection for CONFIG GET (RedisBackend.GetWarningsAsync).
        options.ClientName ??= "conveyor";
        return options;
    }

    /// <summary>The URL with its password replaced by <c>***</c>, for logs and health reports.</summary>
    public static string Redact(string configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var scheme = configuration.IndexOf("://", StringComparison.Ordinal);
        var at = configuration.LastIndexOf('@');
        if (scheme >= 0 && at > scheme)
        {
            return string.Concat(configuration.AsSpan(0, scheme + 3), "***", configuration.AsSpan(at));
        }
        var password = configuration.IndexOf("password=", StringComparison.OrdinalIgnoreCase);
        if (password >= 0)
        {
            var end = configuration.IndexOf(',', password);
            return string.Concat(configuration.AsSpan(0, password + 9), "***", end < 0 ? string.Empty : configuration[end..]);
        }
        return configuration;
    }
}
