namespace Conveyor.Postgres;

/// <summary>Settings of the PostgreSQL backend.</summary>
public sealed class PostgresBackendOptions
{
    /// <summary>An Npgsql connection string (<c>Host=…;Username=…</c>) or a <c>postgresql://user:pass@host:port/db</c> URL. Required.</summary>
    public string ConnectionString { get; set; } = "";

    /// <summary>Schema holding Conveyor's tables: lower-case letters, digits and <c>_</c>, at most 50 characters.
    /// Default <c>conveyor</c>. Tests use a unique one each.</summary>
    public string Schema { get; set; } = "conveyor";

    /// <summary>Whether <paramref name="schema"/> is a name <see cref="Schema"/> accepts.</summary>
    public static bool IsValidSchema(string? schema) =>
        schema is { Length: > 0 and <= 50 }
        && (schema[0] is '_' or (>= 'a' and <= 'z'))
        && schema.All(c => c is '_' or (>= 'a' and <= 'z') or (>= '0' and <= '9'));

    /// <summary>Longest pause between attempts to re-establish the LISTEN connection after it broke
    /// (the pause doubles from 100 ms up to this). Default 5 s.</summary>
    public TimeSpan MaxReconnectDelay { get; set; } = TimeSpan.FromSeconds(5);
}
