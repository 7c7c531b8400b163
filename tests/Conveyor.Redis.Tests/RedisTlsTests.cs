using Conveyor.Backends;
using Conveyor.Conformance.Tls;
using Conveyor.TestBackends;
using StackExchange.Redis;

namespace Conveyor.Redis.Tests;

/// <summary>
/// TLS to the test Redis server's TLS port (CONVEYOR_TEST_REDIS_TLS: rediss://, ssl_ca_certs naming the private CA
/// scripts/services/redis.sh made), through REDIS_URL as the server reads it: a task runs over connections that Redis
/// lists on its TLS port, and a CA the certificate does not chain to, or a host name it does not hold, is refused with an
/// error naming what to change.
/// </summary>
public sealed class RedisTlsTests : TlsTest
{
    [Fact]
    public async Task Tls_A_task_runs_through_rediss_on_connections_of_the_TLS_port()
    {
        var keyspace = (RedisKeyspace)BackendUrls.Select(null, TestServers.RedisTls, null, "sqlite:///unused.db") with
        {
            KeyPrefix = "cvtls-" + Guid.NewGuid().ToString("N") + ":",
        };
        var tlsPort = new Uri(TestServers.RedisTls).Port;
        Assert.NotEqual(new Uri(TestServers.Redis).Port, tlsPort);
        try
        {
            await TlsTestSupport.RunOneTaskAsync(keyspace.Create(), "over TLS", async record =>
            {
                Assert.Equal(TaskState.Succeeded, record.State);
                Assert.Equal("ran over TLS", TlsTestSupport.ResultText(record));

                // Redis lists each client with the address it reached (laddr): the backend's are on the TLS port.
                var admin = await RedisTestBackend.ConnectionAsync();
                var clients = (string)(await admin.GetServer(admin.GetEndPoints()[0]).ExecuteAsync("CLIENT", "LIST"))!;
                Assert.Contains(clients.Split('\n'), line =>
                    line.Contains($" laddr=127.0.0.1:{tlsPort} ", StringComparison.Ordinal) && line.Contains(" name=conveyor ", StringComparison.Ordinal));
            }, Timeout.Token);
        }
        finally
        {
            await keyspace.DropAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task Tls_A_certificate_authority_the_server_certificate_does_not_chain_to_is_refused_naming_ssl_ca_certs()
    {
        var unrelated = TlsTestSupport.WriteUnrelatedCertificateAuthority(Folder);
        var url = TestServers.RedisTls[..TestServers.RedisTls.IndexOf('?', StringComparison.Ordinal)] + "?ssl_ca_certs=" + unrelated;
        var error = await Assert.ThrowsAnyAsync<Exception>(() => MigrateAsync(url));

        var messages = TlsTestSupport.Messages(error);
        Assert.Contains($"ssl_ca_certs={unrelated}", messages, StringComparison.Ordinal);
        Assert.Contains("does not chain to a certificate authority", messages, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Tls_A_host_name_the_certificate_does_not_hold_is_refused()
    {
        // The test certificate holds 127.0.0.1 only; localhost reaches the same server under another name.
        var url = TestServers.RedisTls.Replace("://127.0.0.1:", "://localhost:", StringComparison.Ordinal);
        Assert.NotEqual(TestServers.RedisTls, url);
        var error = await Assert.ThrowsAnyAsync<Exception>(() => MigrateAsync(url));

        Assert.Contains("does not name 'localhost', the host in the URL", TlsTestSupport.Messages(error), StringComparison.Ordinal);
    }

    [Fact]
    public void Tls_ssl_ca_certs_needs_rediss()
    {
        var ca = TlsTestSupport.WriteUnrelatedCertificateAuthority(Folder);
        var error = Assert.Throws<FormatException>(() => RedisUrl.Parse("redis://cache.internal:6379?ssl_ca_certs=" + ca));
        Assert.Contains("ssl_ca_certs needs TLS: use rediss://", error.Message, StringComparison.Ordinal);
        Assert.True(RedisUrl.Parse("rediss://cache.internal:6380?ssl_ca_certs=" + ca).Ssl);
    }

    [Fact]
    public void Tls_An_unknown_url_parameter_is_refused_rather_than_ignored()
    {
        var error = Assert.Throws<FormatException>(() => RedisUrl.Parse("rediss://:secret@cache.internal:6380?ssl_cert_reqs=none"));
        Assert.Contains("'ssl_cert_reqs' is not known", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("secret", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Tls_An_ssl_ca_certs_file_that_cannot_be_read_is_refused_naming_it()
    {
        var missing = Path.Combine(Folder, "missing-ca.pem");
        var error = Assert.Throws<ArgumentException>(() => RedisUrl.Parse("rediss://cache.internal:6380?ssl_ca_certs=" + missing));
        Assert.Contains($"ssl_ca_certs={missing}: the certificate authority file cannot be read", error.Message, StringComparison.Ordinal);
    }

    private static async Task MigrateAsync(string url)
    {
        var backend = new RedisKeyspace(url, "cvtls-" + Guid.NewGuid().ToString("N") + ":").Create(connection: null);
        await using (backend)
        {
            await backend.MigrateAsync(CancellationToken.None);
        }
    }
}
