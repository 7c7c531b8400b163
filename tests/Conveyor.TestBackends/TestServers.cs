using Conveyor.Backends;

namespace Conveyor.TestBackends;

/// <summary>
/// The servers the tests run against, from <c>CONVEYOR_TEST_POSTGRES</c>, <c>CONVEYOR_TEST_REDIS</c> and
/// <c>CONVEYOR_TEST_AMQP</c> (<c>scripts/test.sh</c> starts them and sets the variables), and fresh places on them for
/// one test, to drop afterwards. A variable that is not set fails the test with how to start its server: no test is
/// skipped for want of one.
/// </summary>
public static class TestServers
{
    /// <summary>The test PostgreSQL server: a <c>postgresql://</c> URL or an Npgsql connection string.</summary>
    public static string Postgres => Read("CONVEYOR_TEST_POSTGRES", "postgres", "a postgresql://user:pass@host:port/db URL");

    /// <summary>The test Redis server's <c>redis://</c> URL.</summary>
    public static string Redis => Read("CONVEYOR_TEST_REDIS", "redis", "a redis://host:port URL");

    /// <summary>The test RabbitMQ broker's <c>amqp://</c> URL.</summary>
    public static string Amqp => Read("CONVEYOR_TEST_AMQP", "rabbitmq", "an amqp://user:pass@host:port/ URL");

    /// <summary>The test PostgreSQL server through TLS: a <c>postgresql://…?sslmode=verify-full&amp;sslrootcert=…</c> URL
    /// that trusts the private CA scripts/services/postgres.sh made.</summary>
    public static string PostgresTls => Read("CONVEYOR_TEST_POSTGRES_TLS", "postgres", "a postgresql://user:pass@host:port/db?sslmode=verify-full&sslrootcert=/path/ca.pem URL");

    /// <summary>The test Redis server's TLS port: a <c>rediss://…?ssl_ca_certs=…</c> URL that trusts the private CA
    /// scripts/services/redis.sh made.</summary>
    public static string RedisTls => Read("CONVEYOR_TEST_REDIS_TLS", "redis", "a rediss://host:port?ssl_ca_certs=/path/ca.pem URL");

    /// <summary>The test RabbitMQ broker's TLS listener: an <c>amqps://…?cacertfile=…</c> URL that trusts the private
    /// CA scripts/services/rabbitmq.sh made.</summary>
    public static string AmqpTls => Read("CONVEYOR_TEST_AMQP_TLS", "rabbitmq", "an amqps://user:pass@host:port/?cacertfile=/path/ca.pem URL");

    /// <summary>A schema of its own on the test PostgreSQL server, named <paramref name="stem"/>_ and 32 hex digits
    /// (at most 17 characters of stem: a schema name has at most 50). Migrating creates it.</summary>
    public static PostgresDatabase FreshPostgres(string stem = "t") => new(Postgres, stem + "_" + Guid.NewGuid().ToString("N"));

    /// <summary>A key prefix of its own on the test Redis server: <paramref name="stem"/>- and 32 hex digits.</summary>
    public static RedisKeyspace FreshRedis(string stem = "cvtest") => new(Redis, stem + "-" + Guid.NewGuid().ToString("N") + ":");

    /// <summary>An exchange and queue prefix of its own on the test broker, <paramref name="stem"/>. and 32 hex digits,
    /// beside <paramref name="store"/>.</summary>
    public static RabbitMqBroker FreshRabbitMq(SqlDatabase store, string stem = "t") => new(Amqp, store, stem + "." + Guid.NewGuid().ToString("N"));

    /// <summary>
    /// A fresh backend of the kind a process test names: <c>sqlite</c> (<c>store.db</c> in <paramref name="folder"/>),
    /// <c>postgres</c> (a schema), <c>redis</c> (a key prefix), <c>rabbitmq-sqlite</c> or <c>rabbitmq-postgres</c>
    /// (a broker prefix beside that store). Names start with <paramref name="stem"/>.
    /// </summary>
    public static BackendLocation Fresh(string kind, string folder, string stem = "t") => kind switch
    {
        "sqlite" => new SqliteDatabase(Path.Combine(folder, "store.db")),
        "postgres" => FreshPostgres(stem),
        "redis" => FreshRedis(stem),
        _ when kind.StartsWith("rabbitmq-", StringComparison.Ordinal) => FreshRabbitMq((SqlDatabase)Fresh(kind["rabbitmq-".Length..], folder, stem), stem),
        _ => throw new ArgumentException($"'{kind}' is not a kind of backend: sqlite, postgres, redis, rabbitmq-sqlite or rabbitmq-postgres.", nameof(kind)),
    };

    /// <summary>Runs <paramref name="test"/> on a <see cref="Fresh"/> backend and drops it afterwards, whatever the
    /// test's outcome.</summary>
    public static async Task WithFreshAsync(string kind, string folder, Func<BackendLocation, Task> test, string stem = "t")
    {
        ArgumentNullException.ThrowIfNull(test);
        var location = Fresh(kind, folder, stem);
        try
        {
            await test(location).ConfigureAwait(false);
        }
        finally
        {
            await location.DropAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }

    private static string Read(string variable, string service, string form) =>
        Environment.GetEnvironmentVariable(variable) is { Length: > 0 } value
            ? value
            : throw new InvalidOperationException(
                $"{variable} is not set, so the tests that need a {service} server have none. 'bash scripts/test.sh' starts one by itself; "
                + $"by hand, 'source scripts/services/{service}.sh' starts one and exports {variable} in your shell (run the tests from it), "
                + $"'bash scripts/services/{service}.sh stop' stops it. Or set {variable} to {form}.");
}
