using Conveyor.Postgres;
using Conveyor.Sqlite;

namespace Conveyor.Server.Configuration;

/// <summary>The database named by <c>DATABASE_URL</c>: registers its backend.</summary>
internal abstract record Database
{
    /// <summary>Registers the backend for every role.</summary>
    public abstract ConveyorBuilder Use(ConveyorBuilder builder);
}

/// <summary>A SQLite database named by a <c>sqlite://</c> URL.</summary>
/// <param name="Path">File path as given: relative to the working directory unless absolute.</param>
/// <param name="Synchronous">Durability from <c>?synchronous=</c>, or null for the backend's default.</param>
internal sealed record SqliteDatabase(string Path, SqliteSynchronous? Synchronous) : Database
{
    /// <summary>Applies this database to the backend's options.</summary>
    public void Apply(SqliteBackendOptions options)
    {
        options.Path = Path;
        if (Synchronous is { } synchronous)
        {
            options.Synchronous = synchronous;
        }
    }

    /// <inheritdoc />
    public override ConveyorBuilder Use(ConveyorBuilder builder) => builder.UseSqlite(Apply);
}

/// <summary>A PostgreSQL database named by a <c>postgresql://</c> or <c>postgres://</c> URL.</summary>
/// <param name="ConnectionString">The Npgsql connection string made from the URL.</param>
/// <param name="Schema">Conveyor's schema from <c>?schema=</c>, or null for the default (<c>conveyor</c>).</param>
internal sealed record PostgresDatabase(string ConnectionString, string? Schema) : Database
{
    /// <inheritdoc />
    public override ConveyorBuilder Use(ConveyorBuilder builder) => builder.UsePostgres(o =>
    {
        o.ConnectionString = ConnectionString;
        if (Schema is not null)
        {
            o.Schema = Schema;
        }
    });

    // Keeps the password out of logs and exception messages.
    /// <inheritdoc />
    public override string ToString() => $"PostgresDatabase {{ Schema = {Schema} }}";
}

/// <summary>
/// Reads <c>DATABASE_URL</c> as the seeds' deployments write it, with SQLAlchemy's convention for SQLite:
/// <c>sqlite:///data/x.db</c> and <c>sqlite:///./data/x.db</c> are relative to the working directory,
/// <c>sqlite:////var/lib/conveyor/x.db</c> (four slashes) is absolute. <c>?synchronous=full</c> syncs every commit.
/// <c>postgresql://user:password@host:port/database</c> (or <c>postgres://</c>) selects PostgreSQL; its query may
/// name Conveyor's schema (<c>?schema=conveyor</c>) and libpq's <c>sslmode</c>, <c>application_name</c>, <c>connect_timeout</c>.
/// </summary>
internal static class DatabaseUrl
{
    /// <summary>Parses <paramref name="url"/>; throws <see cref="ConveyorConfigurationException"/> saying what to change.</summary>
    public static Database Parse(string? url)
    {
        url = string.IsNullOrWhiteSpace(url) ? ServerOptions.DefaultDatabaseUrl : url.Trim();
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
                throw new ConveyorConfigurationException($"DATABASE_URL {scheme}:// selects the Redis backend (RedisSelection), not a SQL database.");
            case "amqp" or "amqps":
                throw new ConveyorConfigurationException(
                    $"DATABASE_URL {scheme}:// names a broker, not a database: set AMQP_URL to the RabbitMQ URL and DATABASE_URL to its SQL store (postgresql://… or sqlite:///…).");
            case "":
                throw new ConveyorConfigurationException(
                    "DATABASE_URL is not a URL; use sqlite:///./data/conveyor.db (relative) or sqlite:////var/lib/conveyor/conveyor.db (absolute).");
            default:
                throw new ConveyorConfigurationException(
                    $"DATABASE_URL scheme '{scheme}://' is not supported; use sqlite:///path (relative) or sqlite:////path (absolute).");
        }
    }

    private static ConveyorConfigurationException Unavailable(string scheme, string backend) =>
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
            throw new ConveyorConfigurationException(
                $"DATABASE_URL schema '{schema}' is not valid: use lower-case letters, digits and '_', at most 50 characters, starting with a letter or '_'.");
        }
        try
        {
            return new PostgresDatabase(PostgresConnectionString.Normalize(url), schema);
        }
        catch (Exception ex) when (ex is ArgumentException or FormatException or OverflowException)
        {
            // Only the scheme is repeated: the rest of the URL may hold a password.
            throw new ConveyorConfigurationException(
                $"DATABASE_URL {scheme}:// is not valid; expected postgresql://user:password@host:port/database[?schema=conveyor&sslmode=require].", ex);
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
            throw new ConveyorConfigurationException(
                "DATABASE_URL sqlite:// needs three slashes before a relative path (sqlite:///./data/conveyor.db) or four before an absolute one (sqlite:////var/lib/conveyor/conveyor.db).");
        }
        var path = Uri.UnescapeDataString(rest[1..]);
        if (path.Length == 0 || path == ":memory:")
        {
            throw new ConveyorConfigurationException(
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
                throw new ConveyorConfigurationException($"DATABASE_URL sqlite:// has an unknown parameter '{key}'; the one known is synchronous=normal|full.");
            }
            synchronous = value.ToLowerInvariant() switch
            {
                "normal" => SqliteSynchronous.Normal,
                "full" => SqliteSynchronous.Full,
                _ => throw new ConveyorConfigurationException($"DATABASE_URL synchronous='{value}' is not known; use normal or full."),
            };
        }
        return new SqliteDatabase(path, synchronous);
    }
}
