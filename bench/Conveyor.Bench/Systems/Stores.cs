using Conveyor.Backends;
using Conveyor.Bench.Infrastructure;
using Conveyor.Postgres;
using Conveyor.RabbitMQ;
using Conveyor.Redis;
using Conveyor.Sqlite;
using Hangfire;
using Hangfire.InMemory;
using Hangfire.PostgreSql;
using Hangfire.PostgreSql.Factories;
using Hangfire.Redis.StackExchange;
using Npgsql;
using RabbitMQ.Client;
using StackExchange.Redis;

namespace Conveyor.Bench.Systems;

/// <summary>The storage engine a table of the report is about (<c>--backend</c>).</summary>
internal enum BenchBackend
{
    Sqlite,
    Postgres,
    Redis,
    /// <summary>The queue role on RabbitMQ, paired with a SQLite store; there is no Hangfire storage for RabbitMQ.</summary>
    RabbitMq,
}

/// <summary>
/// What one case runs on: the backend and, for SQLite, its <c>synchronous</c> setting.
/// <see cref="OpenConveyor"/> and <see cref="OpenHangfire"/> give each run a fresh store
/// (a temporary SQLite file, a fresh PostgreSQL schema or a fresh Redis key prefix) that is removed afterwards.
/// </summary>
internal sealed record StoreTarget(BenchBackend Backend, SqliteSynchronous Synchronous = SqliteSynchronous.Normal)
{
    public static string DisplayName(BenchBackend backend) => backend switch
    {
        BenchBackend.Postgres => "PostgreSQL",
        BenchBackend.Redis => "Redis",
        BenchBackend.RabbitMq => "RabbitMQ + SQLite",
        _ => "SQLite",
    };

    /// <summary>What a fresh run gets on the backend, for the reports' notes.</summary>
    public static string FreshStore(BenchBackend backend) => backend switch
    {
        BenchBackend.Postgres => "a fresh PostgreSQL schema",
        BenchBackend.Redis => "a fresh Redis key prefix",
        BenchBackend.RabbitMq => "a fresh SQLite file (NORMAL) and fresh broker queues (durable, persistent messages, publisher confirms)",
        _ => "a fresh SQLite file",
    };

    /// <summary>Whether Hangfire has a storage on this backend to compare with in the same run.</summary>
    public static bool HasHangfire(BenchBackend backend) => backend != BenchBackend.RabbitMq;

    /// <summary>Column of Conveyor's figures: <c>SQLite NORMAL</c>, <c>PostgreSQL</c>, <c>Redis</c>.</summary>
    public string ConveyorVariant => Backend == BenchBackend.Sqlite ? Workloads.Variants.Sqlite(Synchronous) : DisplayName(Backend);

    /// <summary>Column of Hangfire's figures on the matching storage.</summary>
    public static string HangfireVariant(BenchBackend backend) => backend switch
    {
        BenchBackend.Postgres => "Hangfire.PostgreSql",
        BenchBackend.Redis => "Hangfire.Redis.StackExchange",
        BenchBackend.RabbitMq => throw new InvalidOperationException("Hangfire has no RabbitMQ storage."),
        _ => Workloads.Variants.HangfireInMemory,
    };

    /// <summary>Whether Hangfire runs on a server here, and is therefore capped by <c>--time-limit</c>.</summary>
    public static bool IsServer(BenchBackend backend) => backend != BenchBackend.Sqlite;

    public static string Url(BenchBackend backend, BenchSettings s) => backend switch
    {
        BenchBackend.Postgres => s.PostgresUrl ?? throw new InvalidOperationException(
            "no PostgreSQL URL: pass --postgres-url or set CONVEYOR_TEST_POSTGRES (eval \"$(bash scripts/services/postgres.sh start)\")"),
        BenchBackend.Redis => s.RedisUrl ?? throw new InvalidOperationException(
            "no Redis URL: pass --redis-url or set CONVEYOR_TEST_REDIS (export CONVEYOR_TEST_REDIS=$(bash scripts/services/redis.sh start))"),
        BenchBackend.RabbitMq => s.AmqpUrl ?? throw new InvalidOperationException(
            "no RabbitMQ URL: pass --amqp-url or set CONVEYOR_TEST_AMQP (source scripts/services/rabbitmq.sh)"),
        _ => throw new InvalidOperationException("SQLite has no server."),
    };

    /// <summary>A fresh store for one Conveyor run.</summary>
    public RunStore OpenConveyor(string label, BenchSettings s)
    {
        switch (Backend)
        {
            case BenchBackend.Postgres:
                {
                    var url = Url(Backend, s);
                    var schema = FreshName("bench_conveyor");
                    var database = new PostgresDatabase(url, schema);
                    return new RunStore(b => database.Use(b), () => DropSchemaAsync(url, schema));
                }
            case BenchBackend.Redis:
                {
                    var url = Url(Backend, s);
                    var name = ShortKeyName('c');
                    return new RunStore(b => b.UseRedis(o =>
                    {
                        o.Configuration = url;
                        o.KeyPrefix = name + ":";
                    }), () => DeleteKeysAsync(url, name));
                }
            case BenchBackend.RabbitMq:
                {
                    var url = Url(Backend, s);
                    var prefix = FreshName("bench.conveyor");
                    var dir = new TempDirectory(label);
                    var store = new SqliteDatabase(dir.File("conveyor.db"));
                    return new RunStore(b => store.Use(b).UseRabbitMq(o =>
                    {
                        o.Url = url;
                        o.Prefix = prefix;
                    }), async () =>
                    {
                        await DeleteBrokerObjectsAsync(url, prefix);
                        dir.Dispose();
                    });
                }
            default:
                {
                    var dir = new TempDirectory(label);
                    var database = new SqliteDatabase(dir.File("conveyor.db"), Synchronous);
                    return new RunStore(b => database.Use(b), () =>
                    {
                        dir.Dispose();
                        return ValueTask.CompletedTask;
                    });
                }
        }
    }

    /// <summary>The environment that points a <c>conveyor</c> process at a fresh store of this target in <paramref name="dir"/>
    /// (the variables of docs/configuration.md), with what removes the store afterwards.</summary>
    public (Dictionary<string, string> Environment, Func<ValueTask> Cleanup) ForServer(BenchSettings s, TempDirectory dir)
    {
        var sqliteUrl = $"sqlite:///{Path.GetFullPath(dir.File("conveyor.db"))}?synchronous={Synchronous.ToString().ToLowerInvariant()}";
        static ValueTask Nothing() => ValueTask.CompletedTask;
        switch (Backend)
        {
            case BenchBackend.Postgres:
                {
                    var url = Url(Backend, s);
                    var schema = FreshName("bench_server");
                    var separator = url.Contains('?', StringComparison.Ordinal) ? '&' : '?';
                    return (new() { ["DATABASE_URL"] = $"{url}{separator}schema={schema}" }, () => DropSchemaAsync(url, schema));
                }
            case BenchBackend.Redis:
                {
                    var url = Url(Backend, s);
                    var name = ShortKeyName('s');
                    return (new() { ["REDIS_URL"] = url, ["CONVEYOR_REDIS__KEY_PREFIX"] = name + ":" }, () => DeleteKeysAsync(url, name));
                }
            case BenchBackend.RabbitMq:
                {
                    var url = Url(Backend, s);
                    var prefix = FreshName("bench.server");
                    return (new() { ["DATABASE_URL"] = sqliteUrl, ["AMQP_URL"] = url, ["CONVEYOR_RABBITMQ__PREFIX"] = prefix },
                        () => DeleteBrokerObjectsAsync(url, prefix));
                }
            default:
                return (new() { ["DATABASE_URL"] = sqliteUrl }, Nothing);
        }
    }

    /// <summary>A fresh Hangfire storage for one run on <paramref name="backend"/>, with what removes it afterwards.</summary>
    public static (JobStorage Storage, Func<ValueTask> Cleanup) OpenHangfire(BenchBackend backend, BenchSettings s)
    {
        switch (backend)
        {
            case BenchBackend.Postgres:
                {
                    var url = Url(backend, s);
                    var schema = FreshName("bench_hangfire");
                    var options = new PostgreSqlStorageOptions
                    {
                        SchemaName = schema,
                        PrepareSchemaIfNecessary = true,
                        // LISTEN/NOTIFY instead of the default 15 s queue poll: Hangfire.PostgreSql's fastest fetch.
                        EnableLongPolling = true,
                    };
                    var connectionString = PostgresConnectionString.Normalize(url);
                    var storage = new PostgreSqlStorage(new NpgsqlConnectionFactory(connectionString, options), options);
                    return (storage, () => DropSchemaAsync(url, schema));
                }
            case BenchBackend.Redis:
                {
                    var url = Url(backend, s);
                    var name = ShortKeyName('h');
                    var connection = ConnectionMultiplexer.Connect(RedisUrl.Parse(url));
                    var storage = new RedisStorage(connection, new RedisStorageOptions { Prefix = "{" + name + "}:" });
                    async ValueTask CleanupAsync()
                    {
                        await connection.DisposeAsync();
                        await DeleteKeysAsync(url, name);
                    }
                    return (storage, CleanupAsync);
                }
            default:
                {
                    var storage = new InMemoryStorage();
                    ValueTask Cleanup()
                    {
                        storage.Dispose();
                        return ValueTask.CompletedTask;
                    }
                    return (storage, Cleanup);
                }
        }
    }

    /// <summary>Deletes what a run's RabbitMQ backend declared under <paramref name="prefix"/> (queue names as in docs/rabbitmq.md).</summary>
    private static async ValueTask DeleteBrokerObjectsAsync(string url, string prefix)
    {
        var factory = new ConnectionFactory { Uri = new Uri(url) };
        await using var connection = await factory.CreateConnectionAsync();
        await using var channel = await connection.CreateChannelAsync();
        await channel.QueueDeleteAsync(prefix + ".q." + QueueNames.Default, ifUnused: false, ifEmpty: false);
        await channel.QueueDeleteAsync(prefix + ".dead", ifUnused: false, ifEmpty: false);
        await channel.ExchangeDeleteAsync(prefix + ".dead", ifUnused: false);
        await channel.ExchangeDeleteAsync(prefix, ifUnused: false);
    }

    private static string FreshName(string prefix) => $"{prefix}_{Guid.NewGuid():N}"[..(prefix.Length + 13)];

    /// <summary>A fresh Redis key prefix as long as the defaults (<c>{conveyor}:</c>, <c>{hangfire}:</c>): every key carries
    /// it, so a longer one would inflate the AOF (and with it the rewrites) of both systems beyond a deployment's.</summary>
    private static string ShortKeyName(char system) => system + Guid.NewGuid().ToString("N")[..7];

    private static async ValueTask DropSchemaAsync(string url, string schema)
    {
        // Hangfire's pooled connections would hold locks on the schema being dropped.
        NpgsqlConnection.ClearAllPools();
        await new PostgresDatabase(url, schema).DropAsync(CancellationToken.None);
    }

    /// <summary>Deletes every key that contains <paramref name="name"/>, a name unique to one run (Conveyor wraps its key
    /// prefix in a hash tag, <c>{name}:</c>, so the keys do not start with the prefix as configured).</summary>
    private static async ValueTask DeleteKeysAsync(string url, string name)
    {
        await using var connection = await ConnectionMultiplexer.ConnectAsync(RedisUrl.Parse(url));
        var db = connection.GetDatabase();
        foreach (var endpoint in connection.GetEndPoints())
        {
            var server = connection.GetServer(endpoint);
            var batch = new List<RedisKey>(1_000);
            await foreach (var key in server.KeysAsync(pattern: "*" + RedisPattern(name) + "*", pageSize: 1_000))
            {
                batch.Add(key);
                if (batch.Count == 1_000)
                {
                    await db.KeyDeleteAsync([.. batch]);
                    batch.Clear();
                }
            }
            if (batch.Count > 0)
            {
                await db.KeyDeleteAsync([.. batch]);
            }
        }
    }

    /// <summary>Escapes the glob characters of a name for SCAN MATCH.</summary>
    private static string RedisPattern(string name) =>
        string.Concat(name.Select(c => c is '*' or '?' or '[' or ']' or '\\' ? "\\" + c : c.ToString()));
}

/// <summary>One run's fresh Conveyor store: how to use it, and its removal on dispose.</summary>
internal sealed class RunStore(Action<ConveyorBuilder> use, Func<ValueTask> cleanup) : IAsyncDisposable
{
    public Action<ConveyorBuilder> Use { get; } = use;

    public ValueTask DisposeAsync() => cleanup();
}
