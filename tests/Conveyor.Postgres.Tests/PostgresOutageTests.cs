using System.Net;
using System.Net.Sockets;
using Conveyor.Backends;
using Npgsql;

namespace Conveyor.Postgres.Tests;

/// <summary>Which PostgreSQL failures count as an outage (the API answers 503 to them) and which do not.</summary>
public sealed class PostgresOutageTests
{
    [Fact]
    public async Task A_server_that_refuses_connections_is_an_outage_named_postgres()
    {
        // A free port with nothing listening: the connection is refused, as while PostgreSQL is stopped.
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        await using var backend = new PostgresBackend(new PostgresBackendOptions
        {
            ConnectionString = $"postgresql://conveyor:conveyor@127.0.0.1:{port}/conveyor",
            Schema = "t_outage",
        });
        var exception = await Assert.ThrowsAnyAsync<Exception>(() => backend.GetAsync(Guid.NewGuid(), CancellationToken.None));
        Assert.Equal("postgres", BackendOutage.Find(backend, exception));
    }

    [Theory]
    [InlineData("57P01", true)] // admin_shutdown: the server is stopping
    [InlineData("57P03", true)] // cannot_connect_now: starting up
    [InlineData("08006", true)] // connection_failure
    [InlineData("53300", true)] // too_many_connections
    [InlineData("40P01", false)] // deadlock_detected: transient, but no outage
    [InlineData("40001", false)] // serialization_failure
    [InlineData("23505", false)] // unique_violation
    public async Task Server_errors_are_an_outage_only_when_the_server_is_unavailable(string sqlState, bool outage)
    {
        await using var backend = new PostgresBackend(new PostgresBackendOptions { ConnectionString = "postgresql://u:p@127.0.0.1:1/db" });
        var exception = new PostgresException("message", "FATAL", "FATAL", sqlState);
        Assert.Equal(outage ? "postgres" : null, ((IConveyorBackend)backend).GetUnavailableBackend(exception));
    }
}
