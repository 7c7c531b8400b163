using System.Security.Cryptography;
using Conveyor.Backends;
using Conveyor.Encryption;
using Conveyor.Tests.Engine;
using Conveyor.Workflows;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Tests.Encryption;

/// <summary>Encryption at rest with a real worker on the in-memory backend: what the backend holds is ciphertext, what
/// handlers, the client and workflow steps see is plaintext; a value of an unknown key fails its task by name.</summary>
public sealed class EncryptionEngineTests
{
    private const string Secret = "sk-live-7f3a9c";

    public sealed record SecretArgs(string Token, int Value);

    /// <summary>Returns a result that holds the token, plus the results of the steps it runs after.</summary>
    public sealed class EchoHandler(IWorkflowClient workflows) : ITaskHandler<SecretArgs, SecretArgs>
    {
        public async Task<SecretArgs> HandleAsync(SecretArgs args, TaskContext context, CancellationToken cancellationToken)
        {
            var inputs = await workflows.GetInputsAsync(context, cancellationToken);
            return args with { Token = "result-" + args.Token, Value = args.Value + inputs.Sum(i => i.Result<SecretArgs>()!.Value) };
        }
    }

    public sealed class FailHandler : ITaskHandler<SecretArgs>
    {
        public Task HandleAsync(SecretArgs args, TaskContext context, CancellationToken cancellationToken) =>
            throw new PermanentTaskException("refused token " + args.Token);
    }

    private static PayloadKeyRing Keys(params string[] ids) =>
        new(ids.Select(id => new PayloadKey(id, RandomNumberGenerator.GetBytes(PayloadKey.KeyBytes))));

    private static EngineHost NewHost(PayloadKeyRing keys) => new(c => c
        .AddTask<EchoHandler>("secret.echo")
        .AddTask<FailHandler>("secret.fail")
        .UseEncryption(keys));

    private static TaskRequest Echo(int value) => TaskRequest.Create("secret.echo", new SecretArgs(Secret, value));

    [Fact]
    public async Task Arguments_results_and_errors_are_ciphertext_in_the_backend_and_plaintext_to_handlers_and_readers()
    {
        await using var host = NewHost(Keys("k1"));
        await host.StartAsync();

        var ok = await host.Client.EnqueueAsync(Echo(1));
        var failed = await host.Client.EnqueueAsync(TaskRequest.Create("secret.fail", new SecretArgs(Secret, 0)));
        var many = await host.Client.EnqueueManyAsync([Echo(2), Echo(3)]);

        var record = await host.WaitForStateAsync(ok.Id, TaskState.Succeeded);
        Assert.Equal(new SecretArgs("result-" + Secret, 1), Read(record.Result));
        Assert.Contains(Secret, record.Args, StringComparison.Ordinal);
        var dead = await host.WaitForStateAsync(failed.Id, TaskState.Dead);
        Assert.Equal("refused token " + Secret, dead.Error!.Message);
        Assert.Contains(Secret, dead.Error.Detail, StringComparison.Ordinal);
        Assert.Equal("refused token " + Secret, Assert.Single(dead.Errors).Error.Message);
        foreach (var id in many.Select(r => r.Id))
        {
            await host.WaitForStateAsync(id, TaskState.Succeeded);
        }

        foreach (var id in (Guid[])[ok.Id, failed.Id, .. many.Select(r => r.Id)])
        {
            var raw = (await host.Backend.GetAsync(id, CancellationToken.None))!;
            Assert.StartsWith("\"cv1.k1.", raw.Args, StringComparison.Ordinal);
            Assert.DoesNotContain(Secret, Everything(raw), StringComparison.Ordinal);
        }
        Assert.StartsWith("\"cv1.k1.", (await host.Backend.GetAsync(ok.Id, CancellationToken.None))!.Result, StringComparison.Ordinal);
        var rawDead = (await host.Backend.GetAsync(failed.Id, CancellationToken.None))!;
        Assert.Equal(typeof(PermanentTaskException).FullName, rawDead.Error!.Type);
        Assert.StartsWith("cv1.k1.", rawDead.Error.Message, StringComparison.Ordinal);

        var listed = await host.Services.GetRequiredService<Conveyor.Backends.IConveyorBackend>().Store
            .ListAsync(new Conveyor.Backends.TaskQuery { State = TaskState.Succeeded }, CancellationToken.None);
        Assert.All(listed.Items, t => Assert.Contains(Secret, t.Result, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Workflow_steps_are_stored_encrypted_and_pass_plaintext_results_to_the_next_step()
    {
        await using var host = NewHost(Keys("k1"));
        await host.StartAsync();
        var workflows = host.Services.GetRequiredService<IWorkflowClient>();

        var handle = await workflows.StartAsync(Workflow.Chain([Echo(1), Echo(2), Echo(3)]));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var workflow = await handle.WaitAsync(timeout.Token);

        Assert.Equal(WorkflowState.Succeeded, workflow.State);
        Assert.Equal([1, 3, 6], workflow.Steps.Select(s => s.Result<SecretArgs>()!.Value));
        foreach (var step in workflow.Steps)
        {
            var raw = (await host.Backend.GetAsync(step.Task!.Id, CancellationToken.None))!;
            Assert.StartsWith("\"cv1.k1.", raw.Args, StringComparison.Ordinal);
            Assert.DoesNotContain(Secret, Everything(raw), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task A_task_encrypted_with_a_key_no_longer_configured_fails_with_a_named_error_and_the_worker_goes_on()
    {
        var old = Keys("old");
        var current = new PayloadKey("new", RandomNumberGenerator.GetBytes(PayloadKey.KeyBytes));
        await using var host = NewHost(new PayloadKeyRing([current]));
        // A task stored by a process that had only the old key: its arguments are sealed with 'old'.
        var id = Guid.CreateVersion7();
        await host.Backend.EnqueueAsync([new TaskMessage
        {
            Id = id,
            Task = "secret.echo",
            Args = new PayloadCipher(old).Encrypt("""{"token":"x","value":1}""", id, PayloadField.Args),
            MaxAttempts = 3,
            CreatedAt = DateTimeOffset.UtcNow,
        }], CancellationToken.None);
        await host.StartAsync();

        var dead = await host.WaitForStateAsync(id, TaskState.Dead);
        Assert.Equal(typeof(PayloadDecryptionException).FullName, dead.Error!.Type);
        Assert.Contains("encrypted with key 'old', which is not configured (configured: new)", dead.Error.Message, StringComparison.Ordinal);
        Assert.Equal(1, dead.Attempts);
        // Read back, the undecryptable arguments show as stored rather than failing the read.
        Assert.StartsWith("\"cv1.old.", dead.Args, StringComparison.Ordinal);

        var next = await host.Client.EnqueueAsync(Echo(5));
        Assert.Equal(5, Read((await host.WaitForStateAsync(next.Id, TaskState.Succeeded)).Result).Value);
    }

    [Fact]
    public async Task After_a_rotation_tasks_of_the_old_key_still_run_and_new_values_use_the_new_key()
    {
        var oldKey = new PayloadKey("old", RandomNumberGenerator.GetBytes(PayloadKey.KeyBytes));
        var newKey = new PayloadKey("new", RandomNumberGenerator.GetBytes(PayloadKey.KeyBytes));
        await using var host = NewHost(new PayloadKeyRing([newKey, oldKey]));
        var id = Guid.CreateVersion7();
        await host.Backend.EnqueueAsync([new TaskMessage
        {
            Id = id,
            Task = "secret.echo",
            Args = new PayloadCipher(new PayloadKeyRing([oldKey])).Encrypt($$"""{"token":"{{Secret}}","value":7}""", id, PayloadField.Args),
            CreatedAt = DateTimeOffset.UtcNow,
        }], CancellationToken.None);
        await host.StartAsync();

        var record = await host.WaitForStateAsync(id, TaskState.Succeeded);
        Assert.Equal(new SecretArgs("result-" + Secret, 7), Read(record.Result));
        var raw = (await host.Backend.GetAsync(id, CancellationToken.None))!;
        Assert.StartsWith("\"cv1.old.", raw.Args, StringComparison.Ordinal);
        Assert.StartsWith("\"cv1.new.", raw.Result, StringComparison.Ordinal);
    }

    [Fact]
    public void Without_a_key_the_backend_is_not_wrapped_and_no_middleware_is_added()
    {
        var services = new ServiceCollection();
        services.AddConveyor().UseBackend(_ => new Conveyor.Testing.InMemoryBackend(TimeProvider.System));
        using var provider = services.BuildServiceProvider();

        Assert.IsType<Conveyor.Testing.InMemoryBackend>(provider.GetRequiredService<Conveyor.Backends.IConveyorBackend>());
        Assert.DoesNotContain(provider.GetServices<ITaskMiddleware>(), m => m is PayloadDecryptionMiddleware);
    }

    [Fact]
    public void A_backend_registered_before_or_after_the_keys_or_directly_is_wrapped_once()
    {
        foreach (var register in (Action<IServiceCollection, ConveyorBuilder>[])[
            (_, c) => c.UseBackend(_ => new Conveyor.Testing.InMemoryBackend(TimeProvider.System)).UseEncryption(Keys("k")),
            (_, c) => c.UseEncryption(Keys("k")).UseBackend(_ => new Conveyor.Testing.InMemoryBackend(TimeProvider.System)),
            (s, c) =>
            {
                s.AddSingleton<Conveyor.Backends.IConveyorBackend>(new Conveyor.Testing.InMemoryBackend(TimeProvider.System));
                c.UseEncryption(Keys("k")).UseEncryption(Keys("k2"));
            },
        ])
        {
            var services = new ServiceCollection();
            register(services, services.AddConveyor());
            using var provider = services.BuildServiceProvider();

            var backend = Assert.IsType<EncryptingBackend>(provider.GetRequiredService<Conveyor.Backends.IConveyorBackend>());
            Assert.IsType<Conveyor.Testing.InMemoryBackend>(backend.Inner);
            Assert.Single(provider.GetServices<ITaskMiddleware>(), m => m is PayloadDecryptionMiddleware);
        }
    }

    private static SecretArgs Read(string? json) => System.Text.Json.JsonSerializer.Deserialize<SecretArgs>(json!, ConveyorJson.Options)!;

    private static string Everything(TaskRecord record) => string.Join('\n', [record.Args, record.Result, record.Error?.Message, record.Error?.Detail,
        .. record.Errors.Select(e => e.Error.Message + e.Error.Detail)]);
}
