using Conveyor.Backends;
using Conveyor.Postgres;
using Conveyor.Sqlite;

namespace Conveyor.Server.Configuration;

/// <summary>The database a host uses, in words for its start-up line (never with credentials).</summary>
internal static class DatabaseDescription
{
    public static string Of(IServiceProvider services) => services.GetRequiredService<IConveyorBackend>() switch
    {
        SqliteBackend sqlite => $"sqlite {sqlite.DatabasePath}",
        PostgresBackend postgres => $"postgres {postgres.Server} schema {postgres.Schema}",
        var other => other.Name,
    };
}
