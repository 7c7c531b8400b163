namespace Conveyor.Backends;

/// <summary>
/// The backend that <c>DATABASE_URL</c>, <c>REDIS_URL</c> and <c>AMQP_URL</c> select, as the <c>conveyor</c> commands
/// read them (docs/configuration.md): Redis when <c>DATABASE_URL</c> is a <c>redis://</c> or <c>rediss://</c> URL, or when
/// <c>REDIS_URL</c> is set and <c>DATABASE_URL</c> is not; otherwise the SQL database of <c>DATABASE_URL</c>
/// (<see cref="SqlDatabaseUrl"/>), with RabbitMQ as its queue role when <c>AMQP_URL</c> is set.
/// </summary>
public static class BackendUrls
{
    /// <summary>Selects the backend; throws <see cref="BackendUrlException"/> saying what to change.</summary>
    /// <param name="databaseUrl"><c>DATABASE_URL</c>; empty means <paramref name="defaultDatabaseUrl"/>.</param>
    /// <param name="redisUrl"><c>REDIS_URL</c>, or null.</param>
    /// <param name="amqpUrl"><c>AMQP_URL</c>, or null.</param>
    /// <param name="defaultDatabaseUrl">What an empty <paramref name="databaseUrl"/> means; a <paramref name="databaseUrl"/>
    /// equal to it counts as not set, so that <c>REDIS_URL</c> selects Redis.</param>
    public static BackendLocation Select(string? databaseUrl, string? redisUrl, string? amqpUrl, string defaultDatabaseUrl)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(defaultDatabaseUrl);
        var database = databaseUrl?.Trim();
        if (IsRedis(database))
        {
            return new RedisKeyspace(database!);
        }
        var redis = redisUrl?.Trim();
        // DATABASE_URL naming a SQL database on purpose wins over REDIS_URL, which may be there for the application's cache.
        if (!string.IsNullOrEmpty(redis) && (string.IsNullOrEmpty(database) || database == defaultDatabaseUrl))
        {
            if (!IsRedis(redis))
            {
                throw new BackendUrlException("REDIS_URL must start with redis:// or rediss:// (TLS), such as redis://:password@127.0.0.1:6379/0.");
            }
            return new RedisKeyspace(redis);
        }
        var store = SqlDatabaseUrl.Parse(string.IsNullOrEmpty(database) ? defaultDatabaseUrl : database);
        var amqp = amqpUrl?.Trim();
        if (string.IsNullOrEmpty(amqp))
        {
            return store;
        }
        if (!amqp.StartsWith("amqp://", StringComparison.OrdinalIgnoreCase) && !amqp.StartsWith("amqps://", StringComparison.OrdinalIgnoreCase))
        {
            throw new BackendUrlException("AMQP_URL must start with amqp:// or amqps:// (TLS), such as amqp://user:password@127.0.0.1:5672/.");
        }
        return new RabbitMqBroker(amqp, store);
    }

    private static bool IsRedis(string? url) =>
        url is not null
        && (url.StartsWith("redis://", StringComparison.OrdinalIgnoreCase) || url.StartsWith("rediss://", StringComparison.OrdinalIgnoreCase));
}
