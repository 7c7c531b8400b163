using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conveyor.Conformance.Tls;

/// <summary>What the TLS tests of every engine share: a task run through a backend by a real worker, a certificate
/// authority the test servers' certificates do not chain to, and the messages of an exception and its causes.</summary>
public static class TlsTestSupport
{
    public sealed record EchoArgs(string Text);

    /// <summary>Returns its argument with a mark: the result proves the worker ran it.</summary>
    public sealed class EchoHandler : ITaskHandler<EchoArgs, EchoArgs>
    {
        public Task<EchoArgs> HandleAsync(EchoArgs args, TaskContext context, CancellationToken cancellationToken) =>
            Task.FromResult(new EchoArgs("ran " + args.Text));
    }

    /// <summary>Enqueues one task through a client on <paramref name="backend"/> (migrated here), runs it with a worker on
    /// the same backend, then calls <paramref name="whileOpen"/> with the task's record while the backend's connections are
    /// still open. The host disposes the backend when it stops.</summary>
    public static async Task RunOneTaskAsync(IConveyorBackend backend, string text, Func<TaskRecord, Task> whileOpen, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(whileOpen);
        await backend.MigrateAsync(cancellationToken);
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddConveyor(o =>
        {
            o.RunWorker = true;
            o.RunScheduler = false;
            o.Worker.FetchWait = TimeSpan.FromSeconds(1);
        }).AddTask<EchoHandler>("tls.echo").UseBackend(_ => backend);
        using var host = builder.Build();
        await host.StartAsync(cancellationToken);
        try
        {
            var tasks = host.Services.GetRequiredService<ITaskClient>();
            var id = (await tasks.EnqueueAsync(TaskRequest.Create("tls.echo", new EchoArgs(text)), cancellationToken)).Id;
            while (true)
            {
                var record = await tasks.GetAsync(id, cancellationToken);
                if (record is not null && record.State.IsTerminal())
                {
                    await whileOpen(record);
                    return;
                }
                await Task.Delay(50, cancellationToken);
            }
        }
        finally
        {
            await host.StopAsync(CancellationToken.None);
        }
    }

    /// <summary>The text of the result of a task run by <see cref="RunOneTaskAsync"/>.</summary>
    public static string ResultText(TaskRecord record) =>
        JsonSerializer.Deserialize<EchoArgs>(record?.Result ?? "null", ConveyorJson.Options)?.Text ?? "";

    /// <summary>Writes a fresh self-signed certificate authority, unrelated to the test servers', as PEM into
    /// <paramref name="folder"/> and returns the file's path.</summary>
    public static string WriteUnrelatedCertificateAuthority(string folder)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=Unrelated test CA", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        Directory.CreateDirectory(folder);
        var path = Path.Combine(folder, "unrelated-ca.pem");
        File.WriteAllText(path, certificate.ExportCertificatePem());
        return path;
    }

    /// <summary>The messages of <paramref name="exception"/> and every exception inside it, one a line.</summary>
    public static string Messages(Exception exception)
    {
        var lines = new List<string>();
        var pending = new Stack<Exception>();
        pending.Push(exception);
        while (pending.Count > 0 && lines.Count < 32)
        {
            var current = pending.Pop();
            lines.Add($"{current.GetType().Name}: {current.Message}");
            if (current is AggregateException aggregate)
            {
                foreach (var inner in aggregate.InnerExceptions)
                {
                    pending.Push(inner);
                }
            }
            else if (current.InnerException is { } inner)
            {
                pending.Push(inner);
            }
        }
        return string.Join('\n', lines);
    }
}

/// <summary>A TLS test's own temporary folder and its deadline, both cleaned up after it.</summary>
public abstract class TlsTest : IDisposable
{
    /// <summary>A folder for this test's files (a SQLite store, a foreign CA), deleted after it.</summary>
    protected string Folder { get; } = Path.Combine(Path.GetTempPath(), "conveyor-tls-" + Guid.NewGuid().ToString("N"));

    /// <summary>Cancelled after 60 s: a TLS handshake refused by a client can otherwise wait for its server's timeout.</summary>
    protected CancellationTokenSource Timeout { get; } = new(TimeSpan.FromSeconds(60));

    public void Dispose()
    {
        Timeout.Dispose();
        if (Directory.Exists(Folder))
        {
            Directory.Delete(Folder, recursive: true);
        }
        GC.SuppressFinalize(this);
    }
}
