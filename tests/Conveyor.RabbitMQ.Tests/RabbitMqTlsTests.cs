using Conveyor.Backends;
using Conveyor.Conformance.Tls;
using Conveyor.TestBackends;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;

namespace Conveyor.RabbitMQ.Tests;

/// <summary>
/// TLS to the test broker's TLS listener (CONVEYOR_TEST_AMQP_TLS: amqps://, cacertfile naming the private CA
/// scripts/services/rabbitmq.sh made), through AMQP_URL as the server reads it: a task runs through the listener, which
/// speaks nothing but TLS, and a CA the certificate does not chain to, or a host name it does not hold, is refused with
/// an error naming what to change.
/// </summary>
public sealed class RabbitMqTlsTests : TlsTest
{
    private string StoreUrl => "sqlite:///" + Path.Combine(Folder, "store.db");

    [Fact]
    public async Task Tls_A_task_runs_through_amqps_on_the_TLS_listener()
    {
        Directory.CreateDirectory(Folder);
        var broker = (RabbitMqBroker)BackendUrls.Select(StoreUrl, null, TestServers.AmqpTls, "sqlite:///unused.db") with
        {
            Prefix = "tls." + Guid.NewGuid().ToString("N"),
        };
        var factory = RabbitMqUrl.CreateFactory(broker.Url);
        Assert.True(factory.Ssl.Enabled);
        Assert.Equal("127.0.0.1", factory.Ssl.ServerName);
        try
        {
            await TlsTestSupport.RunOneTaskAsync(broker.Create(), "over TLS", record =>
            {
                Assert.Equal(TaskState.Succeeded, record.State);
                Assert.Equal("ran over TLS", TlsTestSupport.ResultText(record));
                return Task.CompletedTask;
            }, Timeout.Token);
        }
        finally
        {
            await broker.DropAsync(CancellationToken.None);
        }

        // The port the task went through speaks only TLS: a plain AMQP client gets no connection there.
        var tlsPort = new Uri(TestServers.AmqpTls).Port;
        var plain = new ConnectionFactory { Uri = new Uri($"amqp://guest:guest@127.0.0.1:{tlsPort}/"), RequestedConnectionTimeout = TimeSpan.FromSeconds(5) };
        await Assert.ThrowsAsync<BrokerUnreachableException>(() => plain.CreateConnectionAsync(Timeout.Token));
    }

    [Fact]
    public async Task Tls_A_certificate_authority_the_server_certificate_does_not_chain_to_is_refused_naming_cacertfile()
    {
        var unrelated = TlsTestSupport.WriteUnrelatedCertificateAuthority(Folder);
        var url = TestServers.AmqpTls[..TestServers.AmqpTls.IndexOf('?', StringComparison.Ordinal)] + "?cacertfile=" + unrelated;
        var error = await Assert.ThrowsAnyAsync<Exception>(() => MigrateAsync(url));

        var messages = TlsTestSupport.Messages(error);
        Assert.Contains($"cacertfile={unrelated}", messages, StringComparison.Ordinal);
        Assert.Contains("does not chain to a certificate authority", messages, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Tls_A_host_name_the_certificate_does_not_hold_is_refused()
    {
        // The test certificate holds 127.0.0.1 only; localhost reaches the same broker under another name.
        var url = TestServers.AmqpTls.Replace("@127.0.0.1:", "@localhost:", StringComparison.Ordinal);
        Assert.NotEqual(TestServers.AmqpTls, url);
        var error = await Assert.ThrowsAnyAsync<Exception>(() => MigrateAsync(url));

        Assert.Contains("does not name 'localhost', the host in the URL", TlsTestSupport.Messages(error), StringComparison.Ordinal);
    }

    [Fact]
    public void Tls_cacertfile_needs_amqps_and_unknown_parameters_are_refused()
    {
        var ca = TlsTestSupport.WriteUnrelatedCertificateAuthority(Folder);
        var plain = Assert.Throws<ArgumentException>(() => RabbitMqUrl.CreateFactory("amqp://u:secret@mq.internal/?cacertfile=" + ca));
        Assert.Contains("cacertfile needs TLS: use amqps://", plain.Message, StringComparison.Ordinal);
        var unknown = Assert.Throws<ArgumentException>(() => RabbitMqUrl.CreateFactory("amqps://u:secret@mq.internal/?verify=verify_none"));
        Assert.Contains("'verify' is not known", unknown.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("secret", plain.Message + unknown.Message, StringComparison.Ordinal);
        var missing = Assert.Throws<ArgumentException>(() => RabbitMqUrl.CreateFactory("amqps://u:p@mq.internal/?cacertfile=" + Path.Combine(Folder, "missing.pem")));
        Assert.Contains("cacertfile=", missing.Message, StringComparison.Ordinal);
        Assert.Contains("cannot be read", missing.Message, StringComparison.Ordinal);
    }

    private async Task MigrateAsync(string url)
    {
        Directory.CreateDirectory(Folder);
        var backend = (RabbitMqBackend)new RabbitMqBroker(url, new SqliteDatabase(Path.Combine(Folder, Guid.NewGuid().ToString("N") + ".db")), "tls." + Guid.NewGuid().ToString("N")).Create();
        await using (backend)
        {
            await backend.MigrateAsync(Timeout.Token);
        }
    }
}
