using Conveyor.Backends;
using RabbitMQ.Client;

namespace Conveyor.RabbitMQ;

/// <summary>Turns an <c>amqp://</c> or <c>amqps://</c> URL into RabbitMQ.Client's connection settings, TLS included.</summary>
public static class RabbitMqUrl
{
    /// <summary>The query parameter of an <c>amqps://</c> URL naming the PEM file of the certificate authorities that
    /// sign the broker's certificate, instead of the system's (the RabbitMQ URI specification's name).</summary>
    public const string CaCertificatesParameter = "cacertfile";

    /// <summary>A connection factory for <paramref name="url"/>, <c>amqp[s]://user:password@host[:port]/vhost[?cacertfile=/path/ca.pem]</c>.
    /// With <c>amqps</c> the broker's certificate must hold the URL's host and chain to the system's roots, or to the
    /// CA file of <c>cacertfile</c>. Throws <see cref="ArgumentException"/> saying what to change, never repeating the
    /// URL (it may hold a password).</summary>
    public static ConnectionFactory CreateFactory(string url)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(url);
        if (!Uri.TryCreate(url.Trim(), UriKind.Absolute, out var uri) || string.IsNullOrEmpty(uri.Host))
        {
            throw new ArgumentException("The AMQP URL is not valid; expected amqp[s]://user:password@host:port/vhost.", nameof(url));
        }
        var tls = uri.Scheme.Equals("amqps", StringComparison.OrdinalIgnoreCase);
        TrustedCertificateAuthorities? authorities = null;
        foreach (var pair in uri.Query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var equals = pair.IndexOf('=', StringComparison.Ordinal);
            var key = Uri.UnescapeDataString(equals < 0 ? pair : pair[..equals]);
            var value = equals < 0 ? "" : Uri.UnescapeDataString(pair[(equals + 1)..]);
            // RabbitMQ.Client reads no query parameter: an unknown one is refused rather than silently doing nothing.
            if (!key.Equals(CaCertificatesParameter, StringComparison.OrdinalIgnoreCase))
            {
                throw new ArgumentException(
                    $"AMQP URL parameter '{key}' is not known; the one known is {CaCertificatesParameter}=/path/ca.pem (with amqps://).", nameof(url));
            }
            if (!tls)
            {
                throw new ArgumentException($"AMQP URL parameter {CaCertificatesParameter} needs TLS: use amqps:// instead of amqp://.", nameof(url));
            }
            authorities = TrustedCertificateAuthorities.Load(value, CaCertificatesParameter);
        }
        // The client takes scheme, credentials, host, port and virtual host from the URL; TLS for amqps, with the
        // URL's host as the name the certificate must hold.
        var factory = new ConnectionFactory { Uri = new UriBuilder(uri) { Query = "" }.Uri };
        if (authorities is not null)
        {
            factory.Ssl.CertificateValidationCallback = authorities.CreateCallback("RabbitMQ", uri.Host);
        }
        return factory;
    }
}
