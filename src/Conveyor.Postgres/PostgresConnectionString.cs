using Npgsql;

namespace Conveyor.Postgres;

/// <summary>Turns a <c>postgresql://</c> or <c>postgres://</c> URL (libpq's form) into an Npgsql connection string.</summary>
public static class PostgresConnectionString
{
    /// <summary>
    /// The TLS mode for a URL whose <c>sslrootcert</c> names a private CA and whose <c>sslmode</c> is
    /// <paramref name="sslMode"/> (null when not given): a CA given means the server is verified, so no mode means
    /// <c>verify-full</c>, and <c>require</c> means <c>verify-ca</c> as in libpq; a mode that may go without TLS
    /// (<c>disable</c>, <c>allow</c>, <c>prefer</c>) contradicts it and throws <see cref="ArgumentException"/>.
    /// </summary>
    public static SslMode ModeWithRootCertificate(SslMode? sslMode) => sslMode switch
    {
        null => SslMode.VerifyFull,
        SslMode.Require => SslMode.VerifyCA,
        SslMode.VerifyCA or SslMode.VerifyFull => sslMode.Value,
        _ => throw new ArgumentException(
            $"sslrootcert names a certificate authority to verify the server with, but sslmode={ToUrlName(sslMode.Value)} may connect without TLS: use sslmode=verify-full (or leave sslmode out)."),
    };

    /// <summary>libpq's spelling of <paramref name="mode"/>: <c>verify-full</c>, <c>require</c>, …</summary>
    public static string ToUrlName(SslMode mode) => mode switch
    {
        SslMode.VerifyCA => "verify-ca",
        SslMode.VerifyFull => "verify-full",
        _ => mode.ToString().ToLowerInvariant(),
    };

    /// <summary>Returns <paramref name="value"/> as an Npgsql connection string: URLs are converted, anything else is returned as it is.</summary>
    public static string Normalize(string value)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(value);
        value = value.Trim();
        if (!value.StartsWith("postgresql://", StringComparison.OrdinalIgnoreCase) && !value.StartsWith("postgres://", StringComparison.OrdinalIgnoreCase))
        {
            return value;
        }
        if (!Uri.TryCreate(value, UriKind.Absolute, out var uri) || string.IsNullOrEmpty(uri.Host))
        {
            // Never repeat the URL: it may hold a password.
            throw new ArgumentException("The PostgreSQL URL is not valid; expected postgresql://user:password@host:port/database.", nameof(value));
        }
        var builder = new NpgsqlConnectionStringBuilder { Host = uri.Host.Trim('[', ']') };
        if (uri.Port > 0)
        {
            builder.Port = uri.Port;
        }
        if (uri.UserInfo.Length > 0)
        {
            var colon = uri.UserInfo.IndexOf(':', StringComparison.Ordinal);
            builder.Username = Uri.UnescapeDataString(colon < 0 ? uri.UserInfo : uri.UserInfo[..colon]);
            if (colon >= 0)
            {
                builder.Password = Uri.UnescapeDataString(uri.UserInfo[(colon + 1)..]);
            }
        }
        var database = Uri.UnescapeDataString(uri.AbsolutePath.TrimStart('/'));
        if (database.Length > 0)
        {
            builder.Database = database;
        }
        SslMode? sslMode = null;
        foreach (var pair in uri.Query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var equals = pair.IndexOf('=', StringComparison.Ordinal);
            var key = Uri.UnescapeDataString(equals < 0 ? pair : pair[..equals]);
            var setting = equals < 0 ? "" : Uri.UnescapeDataString(pair[(equals + 1)..]);
            switch (key.ToLowerInvariant())
            {
                case "sslmode":
                    sslMode = Enum.Parse<SslMode>(setting.Replace("-", "", StringComparison.Ordinal), ignoreCase: true);
                    builder.SslMode = sslMode.Value;
                    break;
                case "sslrootcert":
                    // libpq's name for the PEM file of the CA that signed the server's certificate.
                    builder.RootCertificate = setting;
                    break;
                case "application_name":
                    builder.ApplicationName = setting;
                    break;
                case "connect_timeout":
                    builder.Timeout = int.Parse(setting, System.Globalization.CultureInfo.InvariantCulture);
                    break;
                default:
                    builder[key] = setting;
                    break;
            }
        }
        if (!string.IsNullOrEmpty(builder.RootCertificate))
        {
            builder.SslMode = ModeWithRootCertificate(sslMode);
        }
        return builder.ConnectionString;
    }
}
