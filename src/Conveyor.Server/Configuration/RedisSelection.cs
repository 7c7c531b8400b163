namespace Conveyor.Server.Configuration;

/// <summary>Whether the configuration selects the Redis backend, and where it is.</summary>
internal static class RedisSelection
{
    /// <summary>The Redis URL when Redis is selected: <c>DATABASE_URL</c> is a <c>redis://</c> or <c>rediss://</c> URL,
    /// or <c>REDIS_URL</c> is set while <c>DATABASE_URL</c> is left at its default. Null selects the SQL backends.</summary>
    public static string? Select(ServerOptions server)
    {
        ArgumentNullException.ThrowIfNull(server);
        var database = server.DatabaseUrl?.Trim();
        if (IsRedis(database))
        {
            return database;
        }
        var redis = server.RedisUrl?.Trim();
        if (string.IsNullOrEmpty(redis))
        {
            return null;
        }
        if (!string.IsNullOrEmpty(database) && database != ServerOptions.DefaultDatabaseUrl)
        {
            // DATABASE_URL names a SQL database on purpose: it wins (REDIS_URL may be there for the application's cache).
            return null;
        }
        if (!IsRedis(redis))
        {
            throw new ConveyorConfigurationException("REDIS_URL must start with redis:// or rediss:// (TLS), such as redis://:password@127.0.0.1:6379/0.");
        }
        return redis;
    }

    private static bool IsRedis(string? url) =>
        url is not null
        && (url.StartsWith("redis://", StringComparison.OrdinalIgnoreCase) || url.StartsWith("rediss://", StringComparison.OrdinalIgnoreCase));
}
