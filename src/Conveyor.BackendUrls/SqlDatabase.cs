using Conveyor.Postgres;
using Conveyor.Sqlite;

namespace Conveyor.Backends;

/// <summary>A SQL database that holds every role of a backend, as a URL names it (<see cref="SqlDatabaseUrl"/>). Dropping it
/// removes what it holds of Conveyor: the SQLite file, or the PostgreSQL schema.</summary>
public abstract record SqlDatabase : BackendLocation
{
    /// <summary>The <c>DATABASE_URL</c> that names this database.</summary>
    public abstract string Url { get; }

    /// <inheritdoc />
    public override IReadOnlyDictionary<string, string> ToEnvironment() => new Dictionary<string, string> { ["DATABASE_URL"] = Url };
}

/// <summary>A SQLite database named by a <c>sqlite://</c> URL.</summary>
/// <param name="Path">File path as given: relative to the working directory unless absolute.</param>
/// <param name="Synchronous">Durability from <c>?synchronous=</c>, or null for the backend's default.</param>
public sealed record SqliteDatabase(string Path, SqliteSynchronous? Synchronous = null) : SqlDatabase
{
    /// <summary>Applies this database to the backend's options.</summary>
    public void Apply(SqliteBackendOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Path = Path;
        if (Synchronous is { } synchronous)
        {
            options.Synchronous = synchronous;
        }
    }

    /// <inheritdoc />
    /// <remarks>Three slashes before a relative path, four before an absolute one; <c>?synchronous=</c> when set.</remarks>
    public override string Url =>
        "sqlite:///" + string.Join('/', Path.Split('/').Select(Uri.EscapeDataString))
        + (Synchronous is { } synchronous ? "?synchronous=" + synchronous.ToString().ToLowerInvariant() : "");

    /// <inheritdoc />
    public override ConveyorBuilder Use(ConveyorBuilder builder) => builder.UseSqlite(Apply);

    /// <inheritdoc />
    public override IConveyorBackend Create(TimeProvider? time = null)
    {
        var options = new SqliteBackendOptions();
        Apply(options);
        return new SqliteBackend(options, time);
    }

    /// <summary>Deletes the file with its WAL, shared-memory and journal files, and the notifier's folder of sockets.
    /// Every instance on the file must be disposed first.</summary>
    public override Task DropAsync(CancellationToken cancellationToken)
    {
        foreach (var suffix in new[] { "", "-wal", "-shm", "-journal" })
        {
            File.Delete(Path + suffix);
        }
        if (Directory.Exists(Path + ".notify"))
        {
            Directory.Delete(Path + ".notify", recursive: true);
        }
        return Task.CompletedTask;
    }
}

/// <summary>A PostgreSQL database named by a <c>postgresql://</c> or <c>postgres://</c> URL.</summary>
/// <param name="ConnectionString">The Npgsql connection string made from the URL, or the URL itself.</param>
/// <param name="Schema">Conveyor's schema from <c>?schema=</c>, or null for the default (<c>conveyor</c>).</param>
public sealed record PostgresDatabase(string ConnectionString, string? Schema = null) : SqlDatabase
{
    /// <summary>Applies this database to the backend's options.</summary>
    public void Apply(PostgresBackendOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.ConnectionString = ConnectionString;
        if (Schema is not null)
        {
            options.Schema = Schema;
        }
    }

    /// <inheritdoc />
    /// <remarks>The URL with <c>?schema=</c> when a schema is set; only a database given as a URL has one.</remarks>
    public override string Url
    {
        get
        {
            if (!ConnectionString.StartsWith("postgresql://", StringComparison.OrdinalIgnoreCase)
                && !ConnectionString.StartsWith("postgres://", StringComparison.OrdinalIgnoreCase))
            {
                throw new InvalidOperationException("This PostgreSQL database was given as a connection string: a process needs DATABASE_URL as a postgresql:// URL.");
            }
            return Schema is null
                ? ConnectionString
                : ConnectionString + (ConnectionString.Contains('?', StringComparison.Ordinal) ? '&' : '?') + "schema=" + Schema;
        }
    }

    /// <inheritdoc />
    public override ConveyorBuilder Use(ConveyorBuilder builder) => builder.UsePostgres(Apply);

    /// <inheritdoc />
    public override IConveyorBackend Create(TimeProvider? time = null)
    {
        var options = new PostgresBackendOptions();
        Apply(options);
        return new PostgresBackend(options, time);
    }

    /// <summary>Drops the schema and everything in it.</summary>
    public override async Task DropAsync(CancellationToken cancellationToken)
    {
        var backend = (PostgresBackend)Create();
        await using (backend.ConfigureAwait(false))
        {
            await backend.DropSchemaAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    // Keeps the password out of logs and exception messages.
    /// <inheritdoc />
    public override string ToString() => $"PostgresDatabase {{ Schema = {Schema} }}";
}
