using System.Net;
using Conveyor.Postgres;
using Conveyor.TestBackends;

namespace Conveyor.Server.Tests;

/// <summary>The server with DATABASE_URL=postgresql://…, against the test PostgreSQL server (CONVEYOR_TEST_POSTGRES),
/// in a schema of its own that is dropped afterwards.</summary>
public sealed class PostgresServerTests
{
    [Fact]
    public async Task Server_on_postgres_runs_a_task_to_success_and_reports_ready()
    {
        var database = TestServers.FreshPostgres("srv");
        try
        {
            await using var server = await TestServer.StartAsync(new Dictionary<string, string?> { ["Conveyor:DatabaseUrl"] = database.Url });
            Assert.Equal(database.Schema, server.Service<PostgresBackend>().Schema);

            var id = await server.EnqueueAsync(new { task = "conveyor.noop", args = new { n = 1 } });
            var task = await server.WaitForStateAsync(id, "succeeded");
            Assert.Equal(1, task.GetProperty("attempts").GetInt32());

            using var ready = await server.Client.GetAsync("/health/ready");
            var body = await ready.Content.ReadAsStringAsync();
            Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
            Assert.Contains("PostgreSQL", body);
            Assert.DoesNotContain("conveyor:conveyor@", body);
            // The engine's clock against this process's: one machine, so well under the 1 s that warns.
            var backendCheck = System.Text.Json.JsonDocument.Parse(body).RootElement.GetProperty("checks").EnumerateArray()
                .Single(c => c.GetProperty("name").GetString() == "backend");
            Assert.InRange(backendCheck.GetProperty("data").GetProperty("clockSkewMs").GetDouble(), -1000, 1000);
        }
        finally
        {
            await database.DropAsync(CancellationToken.None);
        }
    }
}
