using Conveyor.AspNetCore;
using Conveyor.Backends;
using Conveyor.RabbitMQ;
using Conveyor.Server.Configuration;
using Conveyor.Server.Hosting;
using Conveyor.Server.Tasks;
using Conveyor.Sqlite;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Conveyor.Server.Tests;

public sealed class ConfigurationTests
{
    [Theory]
    [InlineData("sqlite:///./data/x.db", "./data/x.db")]
    [InlineData("sqlite:///data/x.db", "data/x.db")]
    [InlineData("sqlite:////var/lib/conveyor/x.db", "/var/lib/conveyor/x.db")]
    [InlineData("sqlite:///my%20data/x.db", "my data/x.db")]
    [InlineData("", "./data/conveyor.db")]
    public void Sqlite_url_gives_the_path_with_sqlalchemy_slashes(string url, string path)
    {
        Assert.Equal(path, Assert.IsType<SqliteDatabase>(SelectDatabase(url)).Path);
    }

    [Fact]
    public void Sqlite_url_takes_synchronous()
    {
        Assert.Equal(SqliteSynchronous.Full, Assert.IsType<SqliteDatabase>(SelectDatabase("sqlite:///x.db?synchronous=full")).Synchronous);
        Assert.Null(Assert.IsType<SqliteDatabase>(SelectDatabase("sqlite:///x.db")).Synchronous);
    }

    [Theory]
    [InlineData("postgresql://conveyor:s%40cret@db.internal:6432/jobs?schema=tasks_v1&sslmode=require", 6432, "tasks_v1")]
    [InlineData("postgres://conveyor:s%40cret@db.internal/jobs", 5432, null)]
    public void Postgres_url_gives_a_connection_string_and_schema(string url, int port, string? schema)
    {
        var database = Assert.IsType<PostgresDatabase>(SelectDatabase(url));
        var builder = new Npgsql.NpgsqlConnectionStringBuilder(database.ConnectionString);

        Assert.Equal(("db.internal", port, "conveyor", "s@cret", "jobs"), (builder.Host, builder.Port, builder.Username, builder.Password, builder.Database));
        Assert.Equal(schema, database.Schema);
        Assert.DoesNotContain("s@cret", database.ToString());
    }

    [Theory]
    [InlineData("postgresql://conveyor:secret@db/conveyor?schema=Bad-Name", "schema 'Bad-Name' is not valid")]
    [InlineData("postgresql://conveyor:secret@db/conveyor?no_such_setting=1", "postgresql:// is not valid")]
    [InlineData("postgres://conveyor:secret@/conveyor", "postgres:// is not valid")]
    [InlineData("mysql://u:secret@db/c", "MySQL")]
    [InlineData("amqp://u:secret@broker/", "AMQP_URL")]
    [InlineData("mongodb://localhost", "'mongodb://' is not supported")]
    [InlineData("conveyor.db", "not a URL")]
    [InlineData("sqlite://./x.db", "three slashes")]
    [InlineData("sqlite:///", "needs a file path")]
    [InlineData("sqlite:///x.db?journal=off", "unknown parameter")]
    public void Unusable_database_url_says_what_to_change_without_echoing_secrets(string url, string message)
    {
        var exception = Assert.Throws<ConveyorConfigurationException>(() => SelectDatabase(url));

        Assert.Contains(message, exception.Message);
        Assert.DoesNotContain("secret", exception.Message);
    }

    [Fact]
    public void Redis_url_is_not_a_sql_database()
    {
        var exception = Assert.Throws<BackendUrlException>(() => SqlDatabaseUrl.Parse("redis://localhost:6379"));

        Assert.Contains("selects the Redis backend", exception.Message);
    }

    private static BackendLocation SelectDatabase(string url) => BackendSelection.Select(new ServerOptions { DatabaseUrl = url });

    [Theory]
    [InlineData("WORKER__CONCURRENCY", "Conveyor:WORKER:CONCURRENCY")]
    [InlineData("API_KEYS", "Conveyor:APIKEYS")]
    [InlineData("HTTP__ALLOWED_HOSTS", "Conveyor:HTTP:ALLOWEDHOSTS")]
    [InlineData("WORKER__SHUTDOWN_TIMEOUT", "Conveyor:WORKER:SHUTDOWNTIMEOUT")]
    [InlineData("ENCRYPTION_KEY", "Conveyor:Encryption:Key")]
    [InlineData("ENCRYPTION_KEY_FILE", "Conveyor:Encryption:KeyFile")]
    [InlineData("ENCRYPTION__KEY_FILE", "Conveyor:ENCRYPTION:KEYFILE")]
    public void Conveyor_variables_map_to_option_keys(string name, string key)
    {
        Assert.Equal(key, ConveyorEnvironmentVariablesProvider.MapName(name));
    }

    [Fact]
    public void Encryption_variables_are_settings_and_not_warned_about()
    {
        var environment = new Dictionary<string, string?>
        {
            ["CONVEYOR_ENCRYPTION_KEY"] = "k1:AAAA",
            ["CONVEYOR_ENCRYPTION_KEY_FILE"] = "/etc/conveyor/keys",
        };

        Assert.Empty(ConfigurationKeys.UnknownVariables(environment));
        var configuration = Configure(new Dictionary<string, string?>(), environment);
        Assert.Equal("/etc/conveyor/keys", configuration["Conveyor:Encryption:KeyFile"]);
    }

    [Fact]
    public void Environment_names_bind_the_options()
    {
        var configuration = Configure(new Dictionary<string, string?>(), new Dictionary<string, string?>
        {
            ["DATABASE_URL"] = "sqlite:////srv/conveyor.db",
            ["HOST"] = "0.0.0.0",
            ["PORT"] = "9000",
            ["LOG_LEVEL"] = "WARN",
            ["CONVEYOR_WORKER__CONCURRENCY"] = "3",
            ["CONVEYOR_WORKER__SHUTDOWN_TIMEOUT"] = "00:01:00",
            ["CONVEYOR_API_KEYS"] = "one-0123456789abcdefghijklmnopqrstuv, two-0123456789abcdefghijklmnopqrstuv",
            ["CONVEYOR_HTTP__ALLOWED_HOSTS"] = "api.example.com,*.hooks.example.com",
            ["CONVEYOR_MAX_REQUEST_BODY_SIZE"] = "2048",
            ["UNRELATED"] = "x",
        });
        var section = configuration.GetSection("Conveyor");

        var server = section.Get<ServerOptions>()!;
        Assert.Equal(("0.0.0.0", 9000, "sqlite:////srv/conveyor.db"), (server.Host, server.Port, server.DatabaseUrl));
        var conveyor = section.Get<ConveyorOptions>()!;
        Assert.Equal(3, conveyor.Worker.Concurrency);
        Assert.Equal(TimeSpan.FromMinutes(1), conveyor.Worker.ShutdownTimeout);
        var api = section.Get<ConveyorApiOptions>()!;
        Assert.Equal(["one-0123456789abcdefghijklmnopqrstuv", "two-0123456789abcdefghijklmnopqrstuv"], api.ApiKeys);
        Assert.Equal(2048, api.MaxRequestBodySize);
        Assert.Equal(["api.example.com", "*.hooks.example.com"], section.GetSection("Http").Get<HttpTaskOptions>()!.AllowedHosts);
        Assert.Equal("Warning", configuration[ConveyorConfiguration.LogLevelKey]);
    }

    [Fact]
    public void Limits_bind_from_numbered_variables_and_are_known_settings()
    {
        var environment = new Dictionary<string, string?>
        {
            ["CONVEYOR_LIMITS__0__TASK"] = "http.request",
            ["CONVEYOR_LIMITS__0__RATE"] = "10/m",
            ["CONVEYOR_LIMITS__0__CONCURRENCY"] = "4",
            ["CONVEYOR_LIMITS__0__CONCURRENCY_KEY"] = "headers.x-tenant",
            ["CONVEYOR_LIMITS__1__QUEUE"] = "emails",
            ["CONVEYOR_LIMITS__1__RATE"] = "5/s",
            ["CONVEYOR_LIMITS__1__RAET"] = "5/s",
        };
        var configuration = Configure(new Dictionary<string, string?>(), environment);

        var limits = configuration.GetSection("Conveyor").Get<ConveyorOptions>()!.Limits;

        Assert.Equal(2, limits.Count);
        Assert.Equal(("http.request", "10/m", 4, "headers.x-tenant"), (limits[0].Task, limits[0].Rate, limits[0].Concurrency, limits[0].ConcurrencyKey));
        Assert.Equal(("emails", "5/s"), (limits[1].Queue, limits[1].Rate));
        var warning = Assert.Single(ConfigurationKeys.UnknownVariables(environment));
        Assert.Contains("CONVEYOR_LIMITS__1__RAET names no Conveyor setting", warning, StringComparison.Ordinal);
        Assert.Contains("did you mean CONVEYOR_LIMITS__1__RATE?", warning, StringComparison.Ordinal);
    }

    [Fact]
    public void Flags_win_over_environment_and_conveyor_names_over_aliases()
    {
        var configuration = Configure(
            new Dictionary<string, string?> { ["Conveyor:Worker:Concurrency"] = "7" },
            new Dictionary<string, string?>
            {
                ["CONVEYOR_WORKER__CONCURRENCY"] = "3",
                ["DATABASE_URL"] = "sqlite:///alias.db",
                ["CONVEYOR_DATABASE_URL"] = "sqlite:///explicit.db",
            });

        Assert.Equal("7", configuration["Conveyor:Worker:Concurrency"]);
        Assert.Equal("sqlite:///explicit.db", configuration["Conveyor:DatabaseUrl"]);
    }

    [Fact]
    public void Unknown_log_level_is_refused()
    {
        var exception = Assert.Throws<ConveyorConfigurationException>(() =>
            Configure(new Dictionary<string, string?>(), new Dictionary<string, string?> { ["LOG_LEVEL"] = "loud" }));

        Assert.Contains("LOG_LEVEL 'loud'", exception.Message);
    }

    [Fact]
    public void Port_that_is_not_a_number_is_a_configuration_error()
    {
        var exception = Assert.Throws<ConveyorConfigurationException>(() =>
            ConveyorHosts.BuildHost(HostRole.Tool, new Dictionary<string, string?>(), new Dictionary<string, string?> { ["PORT"] = "eighty" }));

        Assert.Contains("eighty", exception.Message);
    }

    [Fact]
    public void Host_shutdown_timeout_outlasts_the_worker_drain()
    {
        using var host = ConveyorHosts.BuildHost(HostRole.Worker,
            new Dictionary<string, string?> { ["Conveyor:Worker:ShutdownTimeout"] = "00:01:00", ["Conveyor:DatabaseUrl"] = "sqlite:///unused.db" },
            new Dictionary<string, string?>());

        var worker = host.Services.GetRequiredService<IOptions<ConveyorOptions>>().Value.Worker.ShutdownTimeout;
        var shutdown = host.Services.GetRequiredService<IOptions<HostOptions>>().Value.ShutdownTimeout;

        Assert.Equal(TimeSpan.FromMinutes(1), worker);
        Assert.True(shutdown > worker + TimeSpan.FromSeconds(5), $"host {shutdown}, worker {worker}");
    }

    private static ConfigurationManager Configure(Dictionary<string, string?> flags, Dictionary<string, string?> environment)
    {
        var configuration = new ConfigurationManager();
        ConveyorConfiguration.AddSources(configuration, flags, environment);
        return configuration;
    }
}

public sealed class BindSafetyTests
{
    [Theory]
    [InlineData("127.0.0.1", true)]
    [InlineData("127.0.0.2", true)]
    [InlineData("localhost", true)]
    [InlineData("::1", true)]
    [InlineData("[::1]", true)]
    [InlineData("0.0.0.0", false)]
    [InlineData("::", false)]
    [InlineData("*", false)]
    [InlineData("+", false)]
    [InlineData("192.168.1.10", false)]
    [InlineData("conveyor.internal", false)]
    public void Loopback_is_told_apart(string host, bool loopback)
    {
        Assert.Equal(loopback, ListenAddress.IsLoopback(host));
    }

    [Theory]
    [InlineData("0.0.0.0")]
    [InlineData("::")]
    public void Server_refuses_a_public_address_without_api_keys(string host)
    {
        var exception = Assert.Throws<ConveyorConfigurationException>(() => ConveyorHosts.BuildServer(
            new Dictionary<string, string?> { ["Conveyor:Host"] = host, ["Conveyor:Port"] = "0" },
            new Dictionary<string, string?>()));

        Assert.Contains("without API keys", exception.Message);
        Assert.Contains("CONVEYOR_API_KEYS", exception.Message);
    }

    [Fact]
    public void Server_refuses_kestrel_endpoints_that_would_bypass_the_check()
    {
        var exception = Assert.Throws<ConveyorConfigurationException>(() => ConveyorHosts.BuildServer(
            new Dictionary<string, string?> { ["Kestrel:Endpoints:Http:Url"] = "http://0.0.0.0:8000" },
            new Dictionary<string, string?>()));

        Assert.Contains("HOST and PORT", exception.Message);
    }

    [Fact]
    public async Task Server_builds_for_a_public_address_with_an_api_key()
    {
        var folder = TempFolder.Create();
        try
        {
            await using var app = ConveyorHosts.BuildServer(
                new Dictionary<string, string?>
                {
                    ["Conveyor:Host"] = "0.0.0.0",
                    ["Conveyor:Port"] = "0",
                    ["Conveyor:DatabaseUrl"] = "sqlite:///" + Path.Combine(folder, "c.db"),
                    // Off loopback it also needs TLS or a TLS proxy in front (TlsConfigurationTests).
                    ["Conveyor:BehindProxy"] = "true",
                },
                new Dictionary<string, string?> { ["CONVEYOR_API_KEYS"] = "secret-0123456789abcdefghijklmnopqrstu" });

            Assert.Equal(["secret-0123456789abcdefghijklmnopqrstu"], app.Services.GetRequiredService<IOptions<ConveyorApiOptions>>().Value.ApiKeys);
        }
        finally
        {
            TempFolder.Delete(folder);
        }
    }

    [Fact]
    public async Task Amqp_url_moves_the_queue_role_to_rabbitmq_with_the_database_as_its_store()
    {
        var folder = TempFolder.Create();
        try
        {
            await using var app = ConveyorHosts.BuildServer(
                new Dictionary<string, string?>
                {
                    ["Conveyor:Port"] = "0",
                    ["Conveyor:DatabaseUrl"] = "sqlite:///" + Path.Combine(folder, "c.db"),
                },
                new Dictionary<string, string?> { ["AMQP_URL"] = "amqp://guest:guest@127.0.0.1:5672/", ["CONVEYOR_RABBITMQ__PREFIX"] = "app" });

            // Resolving connects nothing: the backend connects on first use.
            var backend = Assert.IsType<RabbitMqBackend>(app.Services.GetRequiredService<IConveyorBackend>());
            Assert.IsType<SqliteBackend>(backend.StoreBackend);
            Assert.Equal("app.q.default", backend.BrokerQueueName("default"));
        }
        finally
        {
            TempFolder.Delete(folder);
        }
    }

    [Fact]
    public void Amqp_url_must_name_a_broker()
    {
        var exception = Assert.Throws<ConveyorConfigurationException>(() => ConveyorHosts.BuildServer(
            new Dictionary<string, string?> { ["Conveyor:Port"] = "0" },
            new Dictionary<string, string?> { ["AMQP_URL"] = "http://u:secret@broker/" }));

        Assert.Contains("AMQP_URL must start with amqp://", exception.Message);
        Assert.DoesNotContain("secret", exception.Message);
    }
}
