using System.Security.Cryptography;
using System.Text.Json;
using Conveyor.Encryption;
using Conveyor.Workflows;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conveyor.Conformance;

/// <summary>
/// Payload encryption at rest (<see cref="ConveyorBuilder.UseEncryption"/>) over a real backend, run by a real worker on
/// the system clock: the engine's own storage, read raw by the backend's test project (<see cref="ReadRawAsync"/>: rows by
/// SQL, keys by Redis commands, messages from the broker), holds no argument, result or error message in clear, while the
/// client reads them back in clear.
/// </summary>
public abstract class EncryptionAtRestConformance<TFactory> : ConformanceTest
    where TFactory : IConformanceBackendFactory, new()
{
    /// <summary>Runs on the system clock: the worker runs for real.</summary>
    protected EncryptionAtRestConformance() : base(new TFactory(), TimeProvider.System)
    {
    }

    /// <summary>Everything <paramref name="backend"/>'s engine holds for this test's storage, as text: every column of
    /// every row, every value of every key, every message waiting in the broker's queues.</summary>
    protected abstract Task<string> ReadRawAsync(IConveyorBackend backend, CancellationToken cancellationToken);

    /// <summary>A secret that appears in arguments, results and error messages, never in clear at rest.</summary>
    private readonly string _secret = "s3cret-" + Guid.NewGuid().ToString("N");

    public sealed record SecretArgs(string Token, bool Fail = false);

    /// <summary>Echoes its token in its result, or fails with it in the error message.</summary>
    public sealed class SecretHandler : ITaskHandler<SecretArgs, SecretArgs>
    {
        public Task<SecretArgs> HandleAsync(SecretArgs args, TaskContext context, CancellationToken cancellationToken) =>
            args.Fail ? throw new PermanentTaskException("refused " + args.Token) : Task.FromResult(args with { Token = "echo " + args.Token });
    }

    private readonly PayloadKeyRing _keys = new([new PayloadKey("t1", RandomNumberGenerator.GetBytes(PayloadKey.KeyBytes))]);

    /// <summary>The argument of a task stored without encryption (straight into the backend): found in clear, it shows
    /// that the raw read reads where arguments are stored (the check of the secret's absence could not fail otherwise).</summary>
    private readonly string _control = "c0ntrol-" + Guid.NewGuid().ToString("N");

    private IHost NewHost(bool worker)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        var conveyor = builder.Services.AddConveyor(o =>
        {
            o.RunWorker = worker;
            o.RunScheduler = worker;
            o.Worker.FetchWait = TimeSpan.FromSeconds(1);
            o.Worker.HeartbeatInterval = TimeSpan.FromMilliseconds(200);
        });
        // The wrapper is not disposable, so the host leaves the test's backend to the factory that built it.
        conveyor.AddTask<SecretHandler>("secret.echo").UseBackend(_ => Backend).UseEncryption(_keys);
        return builder.Build();
    }

    [Fact]
    public async Task Arguments_results_and_errors_are_ciphertext_in_the_engine_and_plaintext_through_the_client()
    {
        var ids = new List<Guid>();
        await Queue.EnqueueAsync([new TaskMessage
        {
            Id = Guid.CreateVersion7(),
            Task = "secret.echo",
            Args = JsonSerializer.Serialize(new SecretArgs(_control), ConveyorJson.Options),
            CreatedAt = Now,
        }], Timeout);
        using (var client = NewHost(worker: false))
        {
            var tasks = client.Services.GetRequiredService<ITaskClient>();
            ids.Add((await tasks.EnqueueAsync(TaskRequest.Create("secret.echo", new SecretArgs(_secret)), Timeout)).Id);
            ids.Add((await tasks.EnqueueAsync(TaskRequest.Create("secret.echo", new SecretArgs(_secret, Fail: true), new EnqueueOptions { MaxAttempts = 1 }), Timeout)).Id);
            ids.AddRange((await tasks.EnqueueManyAsync([
                TaskRequest.Create("secret.echo", new SecretArgs(_secret)),
                TaskRequest.Create("secret.echo", new SecretArgs(_secret))], Timeout)).Select(r => r.Id));
            if (client.Services.GetRequiredService<IConveyorBackend>().Workflows is not null)
            {
                var workflows = client.Services.GetRequiredService<IWorkflowClient>();
                var workflow = await workflows.StartAsync(Workflow.Chain([
                    TaskRequest.Create("secret.echo", new SecretArgs(_secret)),
                    TaskRequest.Create("secret.echo", new SecretArgs(_secret))]), Timeout);
                var record = await workflows.GetAsync(workflow.Id, Timeout);
                ids.AddRange(record!.Steps.Select(s => s.Task!.Id));
            }

            // Waiting: arguments only, in the store and (for a broker) in its queues.
            AssertNoPlaintext(await ReadRawAsync(Backend, Timeout), "after enqueue");
        }

        using var host = NewHost(worker: true);
        await host.StartAsync(Timeout);
        try
        {
            var tasks = host.Services.GetRequiredService<ITaskClient>();
            var records = new List<TaskRecord>();
            foreach (var id in ids)
            {
                records.Add(await WaitForTerminalAsync(tasks, id));
            }

            var failed = records.Single(r => r.Id == ids[1]);
            Assert.Equal(TaskState.Dead, failed.State);
            Assert.Equal("refused " + _secret, failed.Error!.Message);
            Assert.Contains(_secret, failed.Args, StringComparison.Ordinal);
            foreach (var record in records.Where(r => r.Id != ids[1]))
            {
                Assert.Equal(TaskState.Succeeded, record.State);
                Assert.Equal("echo " + _secret, JsonSerializer.Deserialize<SecretArgs>(record.Result!, ConveyorJson.Options)!.Token);
                Assert.Equal(_secret, JsonSerializer.Deserialize<SecretArgs>(record.Args!, ConveyorJson.Options)!.Token);
            }
        }
        finally
        {
            await host.StopAsync(CancellationToken.None);
        }

        // Finished: results and errors as well.
        AssertNoPlaintext(await ReadRawAsync(Backend, Timeout), "after the tasks ran");
    }

    private void AssertNoPlaintext(string raw, string when)
    {
        // The reader read the tasks (their encrypted values are there, and the task enqueued without a key is in clear),
        // and nothing of the secret is in clear.
        Assert.Contains(PayloadCipher.Prefix + "t1.", raw, StringComparison.Ordinal);
        Assert.Contains(_control, raw, StringComparison.Ordinal);
        Assert.False(raw.Contains(_secret, StringComparison.Ordinal), $"the secret is stored in clear {when}");
        Assert.False(raw.Contains("s3cret-", StringComparison.Ordinal), $"part of the secret is stored in clear {when}");
    }

    private async Task<TaskRecord> WaitForTerminalAsync(ITaskClient tasks, Guid id)
    {
        while (true)
        {
            var record = await tasks.GetAsync(id, Timeout);
            if (record is not null && record.State.IsTerminal())
            {
                return record;
            }
            await Task.Delay(50, Timeout);
        }
    }
}
