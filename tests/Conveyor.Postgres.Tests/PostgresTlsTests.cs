using Conveyor.Backends;
using Conveyor.Conformance.Tls;
using Conveyor.TestBackends;
using Npgsql;

namespace Conveyor.Postgres.Tests;

/// <summary>
/// TLS to the test PostgreSQL server (CONVEYOR_TEST_POSTGRES_TLS: sslmode=verify-full, sslrootcert naming the private CA
/// scripts/services/postgres.sh made), through DATABASE_URL as the server reads it: a task runs over sessions that
/// PostgreSQL reports encrypted, and a CA the certificate does not chain to, or a host name it does not hold, is refused
/// with an error naming what to change.
/// </summary>
public sealed class PostgresTlsTests : TlsTest
{
    [Fact]
    public async Task Tls_A_task_runs_through_verified_TLS_and_every_session_of_the_backend_is_encrypted()
    {
        var schema = "tls_" + Guid.NewGuid().ToString("N");
        var application = "conveyor-tls-" + Guid.NewGuid().ToString("N")[..12];
        var database = (PostgresDatabase)SqlDatabaseUrl.Parse($"{TestServers.PostgresTls}&schema={schema}&application_name={application}");
        Assert.Equal(SslMode.VerifyFull, new NpgsqlConnectionStringBuilder(database.ConnectionString).SslMode);
        try
        {
            await TlsTestSupport.RunOneTaskAsync(database.Create(), "over TLS", async record =>
            {
                Assert.Equal(TaskState.Succeeded, record.State);
                Assert.Equal("ran over TLS", TlsTestSupport.ResultText(record));

                // The backend's sessions (still open in its pool, and its LISTEN one), as PostgreSQL sees them from a
                // plain session of the test.
                await using var monitor = new NpgsqlConnection(PostgresConnectionString.Normalize(TestServers.Postgres));
                await monitor.OpenAsync(Timeout.Token);
                await using var sessions = new NpgsqlCommand(
                    "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid WHERE a.application_name = $1",
                    monitor);
                sessions.Parameters.AddWithValue(application);
                await using var reader = await sessions.ExecuteReaderAsync(Timeout.Token);
                Assert.True(await reader.ReadAsync(Timeout.Token));
                var (all, encrypted) = (reader.GetInt64(0), reader.GetInt64(1));
                Assert.True(all > 0, "the backend has sessions open");
                Assert.Equal(all, encrypted);
            }, Timeout.Token);
        }
        finally
        {
            await database.DropAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task Tls_The_session_of_the_url_reports_ssl_in_pg_stat_ssl()
    {
        await using var connection = new NpgsqlConnection(PostgresConnectionString.Normalize(TestServers.PostgresTls));
        await connection.OpenAsync(Timeout.Token);
        await using var command = new NpgsqlCommand("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", connection);
        Assert.True((bool)(await command.ExecuteScalarAsync(Timeout.Token))!);
    }

    [Fact]
    public async Task Tls_A_certificate_authority_the_server_certificate_does_not_chain_to_is_refused_naming_sslrootcert()
    {
        var unrelated = TlsTestSupport.WriteUnrelatedCertificateAuthority(Folder);
        var url = WithRootCertificate(TestServers.PostgresTls, unrelated);
        var error = await Assert.ThrowsAnyAsync<Exception>(() => MigrateAsync(url));

        var messages = TlsTestSupport.Messages(error);
        Assert.Contains($"sslrootcert={unrelated}", messages, StringComparison.Ordinal);
        Assert.Contains("does not chain to a certificate authority", messages, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Tls_A_host_name_the_certificate_does_not_hold_is_refused_by_verify_full()
    {
        // The test certificate holds 127.0.0.1 only; localhost reaches the same server under another name.
        var url = TestServers.PostgresTls.Replace("@127.0.0.1:", "@localhost:", StringComparison.Ordinal);
        Assert.NotEqual(TestServers.PostgresTls, url);
        var error = await Assert.ThrowsAnyAsync<Exception>(() => MigrateAsync(url));

        Assert.Contains("does not name 'localhost', the host in the URL", TlsTestSupport.Messages(error), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("", SslMode.VerifyFull)]
    [InlineData("&sslmode=verify-full", SslMode.VerifyFull)]
    [InlineData("&sslmode=verify-ca", SslMode.VerifyCA)]
    [InlineData("&sslmode=require", SslMode.VerifyCA)]
    public void Tls_sslrootcert_turns_verification_on(string mode, SslMode expected)
    {
        var ca = TlsTestSupport.WriteUnrelatedCertificateAuthority(Folder);
        var database = (PostgresDatabase)SqlDatabaseUrl.Parse($"postgresql://u:p@db.internal/jobs?sslrootcert={Uri.EscapeDataString(ca)}{mode}");
        var settings = new NpgsqlConnectionStringBuilder(database.ConnectionString);

        Assert.Equal(expected, settings.SslMode);
        Assert.Equal(ca, settings.RootCertificate);
    }

    [Theory]
    [InlineData("disable")]
    [InlineData("allow")]
    [InlineData("prefer")]
    public void Tls_sslrootcert_with_a_mode_that_may_go_without_TLS_is_refused(string mode)
    {
        var ca = TlsTestSupport.WriteUnrelatedCertificateAuthority(Folder);
        var error = Assert.Throws<BackendUrlException>(() => SqlDatabaseUrl.Parse($"postgresql://u:secret@db.internal/jobs?sslmode={mode}&sslrootcert={ca}"));

        Assert.Contains($"sslmode={mode} may connect without TLS: use sslmode=verify-full", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("secret", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Tls_An_sslrootcert_file_that_cannot_be_read_is_refused_naming_it()
    {
        var missing = Path.Combine(Folder, "missing-ca.pem");
        var error = Assert.Throws<BackendUrlException>(() => SqlDatabaseUrl.Parse($"postgresql://u:p@db.internal/jobs?sslmode=verify-full&sslrootcert={missing}"));

        Assert.Contains($"DATABASE_URL sslrootcert={missing}: the certificate authority file cannot be read", error.Message, StringComparison.Ordinal);
    }

    private static string WithRootCertificate(string url, string path) =>
        url[..url.IndexOf("sslrootcert=", StringComparison.Ordinal)] + "sslrootcert=" + path;

    private async Task MigrateAsync(string url)
    {
        var database = (PostgresDatabase)SqlDatabaseUrl.Parse($"{url}&schema=tls_{Guid.NewGuid():N}");
        var backend = (PostgresBackend)database.Create();
        await using (backend)
        {
            await backend.MigrateAsync(Timeout.Token);
        }
    }
}
