using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Conveyor.Backends;
using Conveyor.Server.Configuration;
using Conveyor.TestBackends;

namespace Conveyor.Server.Tests;

/// <summary>The server on the Redis backend (CONVEYOR_TEST_REDIS, started by scripts/test.sh).</summary>
public sealed class RedisServerTests
{
    [Fact]
    public async Task Server_on_redis_runs_a_task_to_success_and_reports_redis_in_health()
    {
        var keyspace = TestServers.FreshRedis("cvserver");
        try
        {
            await using var server = await TestServer.StartAsync(new Dictionary<string, string?>
            {
                ["Conveyor:DatabaseUrl"] = keyspace.Url,
                ["Conveyor:Redis:KeyPrefix"] = keyspace.KeyPrefix,
            });

            var id = await server.EnqueueAsync(new { task = "conveyor.noop", args = new { n = 1 } });
            var task = await server.WaitForStateAsync(id, "succeeded");
            Assert.Equal("conveyor.noop", task.GetProperty("task").GetString());

            using var response = await server.Client.GetAsync("/health/ready");
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, text);
            Assert.Contains("Redis", text, StringComparison.Ordinal);
            // The engine's clock against this process's: one machine, so well under the 1 s that warns.
            var backendCheck = System.Text.Json.JsonDocument.Parse(text).RootElement.GetProperty("checks").EnumerateArray()
                .Single(c => c.GetProperty("name").GetString() == "backend");
            Assert.InRange(backendCheck.GetProperty("data").GetProperty("clockSkewMs").GetDouble(), -1000, 1000);

            var queues = await server.Client.GetFromJsonAsync<JsonElement>("/api/v1/queues");
            var queue = queues.EnumerateArray().Single(q => q.GetProperty("name").GetString() == "default");
            Assert.Equal(1, queue.GetProperty("succeeded").GetInt64());
        }
        finally
        {
            await keyspace.DropAsync(CancellationToken.None);
        }
    }

    [Theory]
    [InlineData(ServerOptions.DefaultDatabaseUrl, "redis://cache:6379/1", "redis://cache:6379/1")]
    [InlineData("rediss://:pw@cache:6380/0", null, "rediss://:pw@cache:6380/0")]
    [InlineData("sqlite:///./other.db", "redis://cache:6379", null)]
    [InlineData(ServerOptions.DefaultDatabaseUrl, null, null)]
    public void Redis_is_selected_by_DATABASE_URL_or_by_REDIS_URL_when_DATABASE_URL_is_not_set(string databaseUrl, string? redisUrl, string? selected)
    {
        var backend = BackendSelection.Select(new ServerOptions { DatabaseUrl = databaseUrl, RedisUrl = redisUrl });

        Assert.Equal(selected, (backend as RedisKeyspace)?.Url);
        Assert.Equal(selected is null, backend is SqlDatabase);
    }

    [Fact]
    public void REDIS_URL_that_is_not_a_redis_url_says_what_to_change()
    {
        var exception = Assert.Throws<ConveyorConfigurationException>(() => BackendSelection.Select(new ServerOptions { RedisUrl = "cache:6379" }));
        Assert.Contains("redis://", exception.Message, StringComparison.Ordinal);
    }
}
