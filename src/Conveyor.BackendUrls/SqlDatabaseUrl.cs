using Conveyor.Postgres;
using Conveyor.Sqlite;
using Npgsql;

namespace Conveyor.Backends;

/// <summary>
/// Reads <c>DATABASE_URL</c> as the seeds' deployments write it, with SQLAlchemy's convention for SQLite:
/// <c>sqlite:///data/x.db</c> and <c>sqlite:///./data/x.db</c> are relative to the working directory,
/// <c>sqlite:////var/lib/conveyor/x.db</c> (four slashes) is absolute. <c>?synchronous=full</c> syncs every commit.
/// <c>postgresql://user:password@host:port/database</c> (or <c>postgres://</c>) selects PostgreSQL; its query may
/// name Conveyor's schema (<c>?schema=conveyor</c>) and libpq's <c>sslmode</c>, <c>application_name</c>, <c>connect_timeout</c>.
/// </summary>
public static class SqlDatabaseUrl
{
    /// <summary>Parses <paramref name="url"/>; throws <see cref="BackendUrlException"/> saying what to change.</summary>
    public static SqlDatabase Parse(string url)
    {
        ArgumentNullException.ThrowIfNull(url);
        url = url.Trim();
        var schemeEnd = url.IndexOf("://", StringComparison.Ordinal);
        // Only the scheme is ever repeated in a message: the rest of a server URL may hold a password.
        var scheme = schemeEnd > 0 ? url[..schemeEnd].ToLowerInvariant() : "";
        switch (scheme)
        {
            case "sqlite":
                return ParseSqlite(url[(schemeEnd + 3)..]);
            case "postgresql" or "postgres":
                return ParsePostgres(url, scheme);
            case "mysql" or "mariadb":
                throw Unavailable($"{scheme}://", "the MySQL/MariaDB backend");
            case "redis" or "rediss":
                throw new BackendUrlException($"DATABASE_URL {scheme}:// selects the Redis backend (BackendUrls.Select), not a SQL database.");
            case "amqp" or "amqps":
                throw new BackendUrlException(
                    $"DATABASE_URL {scheme}:// names a broker, not a database: set AMQP_URL to the RabbitMQ URL and DATABASE_URL to its SQL store (postgresql://… or sqlite:///…).");
            case "":
                throw new BackendUrlException(
                    "DATABASE_URL is not a URL; use sqlite:///./data/conveyor.db (relative) or sqlite:////var/lib/conveyor/conveyor.db (absolute).");
            default:
                throw new BackendUrlException(
                    $"DATABASE_URL scheme '{scheme}://' is not supported; use sqlite:///path (relative) or sqlite:////path (absolute).");
        }
    }

    private static BackendUrlException Unavailable(string scheme, string backend) =>
        new($"DATABASE_URL {scheme} needs {backend}, not yet available in Conveyor; use sqlite:///./data/conveyor.db for now.");

    private static PostgresDatabase ParsePostgres(string url, string scheme)
    {
        string? schema = null;
        var question = url.IndexOf('?', StringComparison.Ordinal);
        if (question >= 0)
        {
            var kept = new List<string>();
            foreach (var pair in url[(question + 1)..].Split('&', StringSplitOptions.RemoveEmptyEntries))
            {
                if (pair.StartsWith("schema=", StringComparison.OrdinalIgnoreCase))
                {
                    schema = Uri.UnescapeDataString(pair["schema=".Length..]);
                }
                else
                {
                    kept.Add(pair);
                }
            }
            url = url[..question] + (kept.Count > 0 ? "?" + string.Join('&', kept) : "");
        }
        if (schema is not null && !PostgresBackendOptions.IsValidSchema(schema))
        {
            throw new BackendUrlException(
                $"DATABASE_URL schema '{schema}' is not valid: use lower-case letters, digits and '_', at most 50 characters, starting with a letter or '_'.");
        }
        CheckTls(url);
        try
        {
            return new PostgresDatabase(PostgresConnectionString.Normalize(url), schema);
        }
        catch (Exception ex) when (ex is ArgumentException or FormatException or OverflowException)
        {
            // Only the scheme is repeated: the rest of the URL may hold a password.
            throw new BackendUrlException(
                $"DATABASE_URL {scheme}:// is not valid; expected postgresql://user:password@host:port/database[?schema=conveyor&sslmode=require].", ex);
        }
    }

    // sslrootcert (a private CA) with an sslmode that contradicts it, or a CA file that cannot be read, is told here with
    // what to change; the messages hold the mode and the file's path, never the rest of the URL.
    private static void CheckTls(string url)
    {
        string? rootCertificate = null;
        string? mode = null;
        var question = url.IndexOf('?', StringComparison.Ordinal);
        foreach (var pair in question < 0 ? [] : url[(question + 1)..].Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var equals = pair.IndexOf('=', StringComparison.Ordinal);
            var key = equals < 0 ? pair : pair[..equals];
            var value = equals < 0 ? "" : Uri.UnescapeDataString(pair[(equals + 1)..]);
            if (key.Equals("sslrootcert", StringComparison.OrdinalIgnoreCase))
            {
                rootCertificate = value;
            }
            else if (key.Equals("sslmode", StringComparison.OrdinalIgnoreCase))
            {
                mode = value;
            }
        }
        if (rootCertificate is null)
        {
            return;
        }
        SslMode? sslMode = null;
        if (mode is not null)
        {
            if (!Enum.TryParse<SslMode>(mode.Replace("-", "", StringComparison.Ordinal), ignoreCase: true, out var parsed))
            {
                // Not a mode at all: Normalize's error says what the URL should look like.
                return;
            }
            sslMode = parsed;
        }
        try
        {
            PostgresConnectionString.ModeWithRootCertificate(sslMode);
            TrustedCertificateAuthorities.Load(rootCertificate, "sslrootcert");
        }
        catch (ArgumentException ex)
        {
            throw new BackendUrlException("DATABASE_URL " + ex.Message, ex);
        }
    }

    private static SqliteDatabase ParseSqlite(string rest)
    {
        var query = "";
        var question = rest.IndexOf('?', StringComparison.Ordinal);
        if (question >= 0)
        {
            query = rest[(question + 1)..];
            rest = rest[..question];
        }
        // sqlite://host/path has no meaning for a file; the host part must be empty (three slashes).
        if (!rest.StartsWith('/'))
        {
            throw new BackendUrlException(
                "DATABASE_URL sqlite:// needs three slashes before a relative path (sqlite:///./data/conveyor.db) or four before an absolute one (sqlite:////var/lib/conveyor/conveyor.db).");
        }
        var path = Uri.UnescapeDataString(rest[1..]);
        if (path.Length == 0 || path == ":memory:")
        {
            throw new BackendUrlException(
                "DATABASE_URL sqlite:// needs a file path, such as sqlite:///./data/conveyor.db: workers in other processes must reach the same file.");
        }
        SqliteSynchronous? synchronous = null;
        foreach (var pair in query.Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var equals = pair.IndexOf('=', StringComparison.Ordinal);
            var key = equals < 0 ? pair : pair[..equals];
            var value = equals < 0 ? "" : Uri.UnescapeDataString(pair[(equals + 1)..]);
            if (!key.Equals("synchronous", StringComparison.OrdinalIgnoreCase))
            {
                throw new BackendUrlException($"DATABASE_URL sqlite:// has an unknown parameter '{key}'; the one known is synchronous=normal|full.");
            }
            synchronous = value.ToLowerInvariant() switch
            {
                "normal" => SqliteSynchronous.Normal,
                "full" => SqliteSynchronous.Full,
                _ => throw new BackendUrlException($"DATABASE_URL synchronous='{value}' is not known; use normal or full."),
            };
        }
        return new SqliteDatabase(path, synchronous);
    }
}
