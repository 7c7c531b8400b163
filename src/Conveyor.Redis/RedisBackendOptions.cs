namespace Conveyor.Redis;

/// <summary>Settings of the Redis backend. See docs/redis.md.</summary>
public sealed class RedisBackendOptions
{
    /// <summary>Where Redis is: a URL (<c>redis://[user:password@]host[:port][/db]</c>, or <c>rediss://…</c> for TLS,
    /// with <c>?ssl_ca_certs=/path/ca.pem</c> when a private CA signs the server's certificate; <see cref="RedisUrl"/>)
    /// or a StackExchange.Redis configuration string (<c>host:6379,password=…,ssl=true</c>). Default <c>redis://127.0.0.1:6379</c>.</summary>
    public string Configuration { get; set; } = "redis://127.0.0.1:6379";

    /// <summary>Prefix of every key; a deployment's keys are <c>{prefix}:…</c>, the braces a hash tag that keeps them
    /// in one Redis Cluster slot. Default <c>conveyor:</c> (keys <c>{conveyor}:…</c>).</summary>
    public string KeyPrefix { get; set; } = "conveyor:";

    /// <summary>Most audit entries kept (<c>B audit</c>): appending past it drops the oldest, so that the log stays
    /// bounded in memory whatever retention says. Default 100,000.</summary>
    public int AuditLimit { get; set; } = 100_000;
}
