using Conveyor.Backends;
using Conveyor.Bench.Infrastructure;
using Conveyor.Postgres;
using Conveyor.Redis;
using Conveyor.Sqlite;
using Hangfire;
using Hangfire.InMemory;
using Hangfire.PostgreSql;
using Hangfire.PostgreSql.Factories;
using Hangfire.Redis.StackExchange;
using Npgsql;
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
        var dir = new TempDirectory(label);
        var location = Fresh(s, dir, "bench_conveyor", 'c');
        return new RunStore(b => location.Use(b), ct => AnalyzeAsync(location, ct), async () =>
        {
            await DropAsync(location);
            dir.Dispose();
        });
    }

    /// <summary>Updates the engine's statistics of the tasks table, as autovacuum does (PostgreSQL's <c>ANALYZE</c>), or
    /// SQLite's <c>ANALYZE</c> (which a deployment runs through <c>PRAGMA optimize</c>); Redis keeps none.</summary>
    internal static async Task AnalyzeAsync(BackendLocation location, CancellationToken ct)
    {
        switch (location)
        {
            case PostgresDatabase pg:
                {
                    await using var connection = new NpgsqlConnection(PostgresConnectionString.Normalize(pg.ConnectionString));
                    await connection.OpenAsync(ct);
                    await using var command = new NpgsqlCommand($"ANALYZE \"{pg.Schema ?? "conveyor"}\".tasks", connection);
                    await command.ExecuteNonQueryAsync(ct);
                    break;
                }
            case SqliteDatabase sqlite:
                await AnalyzeSqliteAsync(sqlite.Path, ct);
                break;
            case RabbitMqBroker { Store: SqliteDatabase store }:
                await AnalyzeSqliteAsync(store.Path, ct);
                break;
            default:
                break;
        }
    }

    /// <summary>Turns the one task in the store into <paramref name="count"/> succeeded tasks (<c>--finished</c>): copies
    /// of it with fresh ids, created a millisecond apart before it and each finished with one attempt, as a deployment
    /// that keeps its results has them. Written by one SQL statement (the API would take hours for ten million); the
    /// template itself is removed. Only the SQL stores are filled this way: false elsewhere, so the caller can say so.</summary>
    internal static async Task<bool> FillFinishedAsync(BackendLocation location, long count, CancellationToken ct)
    {
        switch (location)
        {
            case PostgresDatabase pg:
                {
                    var tasks = $"\"{pg.Schema ?? "conveyor"}\".tasks";
                    await using var connection = new NpgsqlConnection(PostgresConnectionString.Normalize(pg.ConnectionString));
                    await connection.OpenAsync(ct);
                    await using var command = new NpgsqlCommand($"""
                        INSERT INTO {tasks} (id, task, queue, state, priority, args, attempt, max_attempts, retry_base_ms, retry_max_ms,
                            retry_jitter, timeout_ms, created_at, started_at, finished_at, headers, lease_owner, history)
                        SELECT gen_random_uuid(), t.task, t.queue, {(int)TaskState.Succeeded}, t.priority, t.args, 1, t.max_attempts, t.retry_base_ms,
                            t.retry_max_ms, t.retry_jitter, t.timeout_ms, t.created_at - (@n - g), t.created_at - (@n - g), t.created_at - (@n - g), t.headers,
                            'bench', '1:' || (t.created_at - (@n - g)) || '|2:' || (t.created_at - (@n - g)) || '|3:' || (t.created_at - (@n - g))
                        FROM {tasks} t, generate_series(1, @n) g;
                        DELETE FROM {tasks} WHERE seq = (SELECT min(seq) FROM {tasks});
                        """, connection) { CommandTimeout = 0 };
                    command.Parameters.AddWithValue("n", count);
                    await command.ExecuteNonQueryAsync(ct);
                    return true;
                }
            case SqliteDatabase sqlite:
                await FillFinishedSqliteAsync(sqlite.Path, count, ct);
                return true;
            default:
                // Redis, and RabbitMQ (whose broker would keep the template's message after its row was gone).
                return false;
        }
    }

    private static async Task FillFinishedSqliteAsync(string path, long count, CancellationToken ct)
    {
        await using var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={path}");
        await connection.OpenAsync(ct);
        await using var command = connection.CreateCommand();
        command.CommandTimeout = 0;
        command.CommandText = $"""
            BEGIN;
            WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < @n)
            INSERT INTO tasks (id, task, queue, state, priority, args, attempt, max_attempts, retry_base_ms, retry_max_ms,
                retry_jitter, timeout_ms, created_at, started_at, finished_at, headers, lease_owner, history)
            SELECT randomblob(16), t.task, t.queue, {(int)TaskState.Succeeded}, t.priority, t.args, 1, t.max_attempts, t.retry_base_ms,
                t.retry_max_ms, t.retry_jitter, t.timeout_ms, t.created_at - (@n - g.n), t.created_at - (@n - g.n), t.created_at - (@n - g.n), t.headers,
                'bench', '1:' || (t.created_at - (@n - g.n)) || '|2:' || (t.created_at - (@n - g.n)) || '|3:' || (t.created_at - (@n - g.n))
            FROM (SELECT * FROM tasks ORDER BY seq LIMIT 1) t, g;
            DELETE FROM tasks WHERE seq = (SELECT min(seq) FROM tasks);
            COMMIT;
            """;
        command.Parameters.AddWithValue("@n", count);
        await command.ExecuteNonQueryAsync(ct);
    }

    private static async Task AnalyzeSqliteAsync(string path, CancellationToken ct)
    {
        await using var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={path}");
        await connection.OpenAsync(ct);
        await using var command = connection.CreateCommand();
        command.CommandText = "ANALYZE";
        await command.ExecuteNonQueryAsync(ct);
    }

    /// <summary>The environment that points a <c>conveyor</c> process at a fresh store of this target in <paramref name="dir"/>
    /// (the variables of docs/configuration.md), with what removes the store afterwards.</summary>
    public (Dictionary<string, string> Environment, Func<ValueTask> Cleanup) ForServer(BenchSettings s, TempDirectory dir)
    {
        var location = Fresh(s, dir, "bench_server", 's');
        return (new Dictionary<string, string>(location.ToEnvironment()), () => DropAsync(location));
    }

    /// <summary>A fresh place for this target: a SQLite file in <paramref name="dir"/> (also the store beside RabbitMQ), a
    /// PostgreSQL schema or RabbitMQ prefix named <paramref name="name"/> and a unique suffix, or a short Redis key prefix
    /// that starts with <paramref name="system"/>.</summary>
    private BackendLocation Fresh(BenchSettings s, TempDirectory dir, string name, char system)
    {
        var sqlite = new SqliteDatabase(Path.GetFullPath(dir.File("conveyor.db")), Synchronous);
        return Backend switch
        {
            BenchBackend.Postgres => new PostgresDatabase(Url(Backend, s), FreshName(name)),
            BenchBackend.Redis => new RedisKeyspace(Url(Backend, s), ShortKeyName(system) + ":"),
            BenchBackend.RabbitMq => new RabbitMqBroker(Url(Backend, s), sqlite, FreshName(name.Replace('_', '.'))),
            _ => sqlite,
        };
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
                    return (storage, () => DropAsync(new PostgresDatabase(url, schema)));
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
                        // Hangfire's keys start with {name}:, the key base Conveyor gives the key prefix name.
                        await new RedisKeyspace(url, name).DropAsync(CancellationToken.None);
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

    private static string FreshName(string prefix) => $"{prefix}_{Guid.NewGuid():N}"[..(prefix.Length + 13)];

    /// <summary>A fresh Redis key prefix as long as the defaults (<c>{conveyor}:</c>, <c>{hangfire}:</c>): every key carries
    /// it, so a longer one would inflate the AOF (and with it the rewrites) of both systems beyond a deployment's.</summary>
    private static string ShortKeyName(char system) => system + Guid.NewGuid().ToString("N")[..7];

    /// <summary>Removes a run's store. Pooled PostgreSQL connections (Hangfire's, the run's) would hold locks on the
    /// schema being dropped: the pools are cleared first.</summary>
    internal static async ValueTask DropAsync(BackendLocation location)
    {
        NpgsqlConnection.ClearAllPools();
        await location.DropAsync(CancellationToken.None);
    }
}

/// <summary>One run's fresh Conveyor store: how to use it, and its removal on dispose.</summary>
internal sealed class RunStore(Action<ConveyorBuilder> use, Func<CancellationToken, Task> analyze, Func<ValueTask> cleanup) : IAsyncDisposable
{
    public Action<ConveyorBuilder> Use { get; } = use;

    /// <summary>Updates the engine's statistics of the store's tasks table (<c>--analyze</c>).</summary>
    public Task AnalyzeAsync(CancellationToken cancellationToken) => analyze(cancellationToken);

    public ValueTask DisposeAsync() => cleanup();
}
