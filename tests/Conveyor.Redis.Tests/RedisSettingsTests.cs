using Conveyor.TestBackends;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Conveyor.Redis.Tests;

/// <summary>Redis-only behaviour: warnings about server settings that put tasks at risk.</summary>
public sealed class RedisSettingsTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Eviction_policy_other_than_noeviction_is_warned_about_in_the_log_and_in_health(bool handedIn)
    {
        var connection = await RedisTestBackend.ConnectionAsync();
        var server = connection.GetServer(connection.GetEndPoints()[0]);
        var before = (await server.ConfigGetAsync("maxmemory-policy")).Single().Value;
        var logger = new ListLogger();
        // Its own connection has no admin commands: the check reads CONFIG through a short-lived connection of its own.
        var backend = new RedisBackend(
            new RedisBackendOptions { Configuration = TestServers.Redis, KeyPrefix = "cvtest-" + Guid.NewGuid().ToString("N") },
            handedIn ? connection : null, TimeProvider.System, logger);
        try
        {
            var healthy = await backend.CheckHealthAsync(CancellationToken.None);
            Assert.True(healthy.Healthy, healthy.Description);
            Assert.DoesNotContain(healthy.Warnings ?? [], w => w.Contains("maxmemory-policy", StringComparison.Ordinal));

            await server.ConfigSetAsync("maxmemory-policy", "allkeys-lru");
            await backend.MigrateAsync(CancellationToken.None);
            var health = await backend.CheckHealthAsync(CancellationToken.None);

            Assert.True(health.Healthy);
            Assert.Contains(health.Warnings ?? [], w => w.Contains("maxmemory-policy is 'allkeys-lru'", StringComparison.Ordinal));
            Assert.Contains(logger.Messages, m => m.Level == LogLevel.Warning && m.Text.Contains("allkeys-lru", StringComparison.Ordinal));
        }
        finally
        {
            await server.ConfigSetAsync("maxmemory-policy", before);
            await backend.DisposeAsync();
        }
    }

    private sealed class ListLogger : ILogger<RedisBackend>
    {
        public List<(LogLevel Level, string Text)> Messages { get; } = [];

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (Messages)
            {
                Messages.Add((logLevel, formatter(state, exception)));
            }
        }
    }
}

/// <summary>Parsing of Redis URLs; needs no server.</summary>
public sealed class RedisUrlUnitTests
{
    [Fact]
    public void A_url_gives_a_connection_without_admin_commands()
    {
        Assert.False(RedisUrl.Parse("redis://cache.internal:6380/2").AllowAdmin);
    }

    [Fact]
    public void Url_with_password_and_database_number_is_parsed()
    {
        var options = RedisUrl.Parse("redis://:s3cret@cache.internal:6380/2");
        Assert.Equal("s3cret", options.Password);
        Assert.Equal(2, options.DefaultDatabase);
        Assert.False(options.Ssl);
        Assert.Equal("Unspecified/cache.internal:6380", options.EndPoints.Single().ToString());
    }

    [Fact]
    public void Rediss_url_turns_on_tls_with_user_and_default_port()
    {
        var options = RedisUrl.Parse("rediss://app:p%40ss@redis.example.com");
        Assert.True(options.Ssl);
        Assert.Equal("app", options.User);
        Assert.Equal("p@ss", options.Password);
        Assert.Equal("Unspecified/redis.example.com:6379", options.EndPoints.Single().ToString());
    }

    [Fact]
    public void Configuration_string_is_accepted_too()
    {
        var options = RedisUrl.Parse("localhost:6390,password=x,ssl=true");
        Assert.True(options.Ssl);
        Assert.Equal("x", options.Password);
    }

    [Fact]
    public void Url_whose_path_is_not_a_database_number_throws()
    {
        Assert.Throws<FormatException>(() => RedisUrl.Parse("redis://localhost/abc"));
    }

    [Fact]
    public void Redact_hides_the_password()
    {
        Assert.Equal("redis://***@host:6379/0", RedisUrl.Redact("redis://:pw@host:6379/0"));
        Assert.Equal("host:6379,password=***,ssl=true", RedisUrl.Redact("host:6379,password=pw,ssl=true"));
    }
}
