using System.Security.Cryptography;
using Conveyor.Backends;
using Conveyor.Encryption;
using Conveyor.Testing;

namespace Conveyor.Tests.Encryption;

/// <summary><see cref="PayloadRotation"/> on the in-memory backend: values of an older key are re-encrypted with the
/// current key and read back with it alone; a second run rewrites nothing; values of unknown keys are counted and left;
/// values in clear are encrypted only when asked.</summary>
public sealed class PayloadRotationTests
{
    private static readonly PayloadKey KeyA = new("A", RandomNumberGenerator.GetBytes(PayloadKey.KeyBytes));
    private static readonly PayloadKey KeyB = new("B", RandomNumberGenerator.GetBytes(PayloadKey.KeyBytes));
    private static readonly PayloadKey KeyX = new("X", RandomNumberGenerator.GetBytes(PayloadKey.KeyBytes));

    private static readonly CancellationToken Timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token;

    private readonly InMemoryBackend _stored = new();

    private EncryptingBackend With(params PayloadKey[] keys) => new(_stored, new PayloadCipher(new PayloadKeyRing(keys)));

    private static async Task<Guid> RunAsync(IConveyorBackend backend, string args, string? result = null, TaskError? error = null)
    {
        var message = new TaskMessage { Id = Guid.CreateVersion7(), Task = "secret", Queue = "default", Args = args, CreatedAt = DateTimeOffset.UtcNow };
        await backend.Queue.EnqueueAsync([message], Timeout);
        if (result is null && error is null)
        {
            return message.Id;
        }
        var lease = Assert.Single(await backend.Queue.FetchAsync(new FetchRequest
        {
            WorkerId = "w",
            Queues = [new QueueWeight("default")],
            MaxCount = 1,
            LeaseDuration = TimeSpan.FromMinutes(1),
        }, Timeout));
        await backend.Queue.CompleteAsync([new Completion
        {
            Lease = lease.Ref,
            Kind = error is null ? CompletionKind.Succeeded : CompletionKind.Dead,
            Attempt = lease.Attempt,
            At = DateTimeOffset.UtcNow,
            Result = result,
            Error = error,
        }], Timeout);
        return message.Id;
    }

    private async Task<List<string>> StoredValuesAsync()
    {
        var page = await _stored.Store.ListAsync(new TaskQuery { Limit = 1000 }, Timeout);
        return [.. page.Items.SelectMany(r => new[] { r.Args, r.Result, r.Error?.Message, r.Error?.Detail }
            .Concat(r.Errors.SelectMany(e => new[] { e.Error.Message, e.Error.Detail }))).OfType<string>()];
    }

    private static Task<PayloadRotationReport> RotateAsync(EncryptingBackend backend, bool dryRun = false, bool includePlaintext = false) =>
        PayloadRotation.RunAsync(backend, backend.Cipher, new PayloadRotationOptions { DryRun = dryRun, IncludePlaintext = includePlaintext, BatchSize = 2 },
            null, Timeout);

    [Fact]
    public async Task Values_of_an_older_key_are_rewritten_with_the_current_key_once_and_others_are_left()
    {
        var withA = With(KeyA);
        var succeeded = await RunAsync(withA, """{"token":"s1"}""", result: """{"out":"r1"}""");
        var failed = await RunAsync(withA, """{"token":"s2"}""", error: new TaskError("Boom", "refused s2", "stack of s2"));
        var queued = await RunAsync(withA, """{"token":"s3"}""");
        var unknown = await RunAsync(With(KeyX), """{"token":"s4"}""");
        var clear = await RunAsync(_stored, """{"token":"s5"}""");
        var rotation = With(KeyB, KeyA);

        var dry = await RotateAsync(rotation, dryRun: true);
        Assert.Equal(8, dry.RewrittenByKey["A"]);
        Assert.Equal(8, (await StoredValuesAsync()).Count(v => v.Contains("cv1.A.", StringComparison.Ordinal)));

        var report = await RotateAsync(rotation);

        Assert.Equal(5, report.TasksScanned);
        Assert.Equal(3, report.TasksRewritten);
        // Arguments of three tasks, one result, the last error's message and detail, the history's message and detail.
        Assert.Equal(new Dictionary<string, long> { ["A"] = 8 }, report.RewrittenByKey);
        Assert.Equal(new Dictionary<string, long> { ["X"] = 1 }, report.UnknownKeys);
        Assert.Equal(1, report.PlaintextLeft);
        Assert.Equal(0, report.PlaintextEncrypted);
        Assert.Equal(0, report.TasksSkippedChanged);
        var values = await StoredValuesAsync();
        Assert.DoesNotContain(values, v => v.Contains("cv1.A.", StringComparison.Ordinal));
        Assert.Equal(8, values.Count(v => v.Contains("cv1.B.", StringComparison.Ordinal)));

        var withB = With(KeyB);
        var ok = await withB.Store.GetAsync(succeeded, Timeout);
        Assert.Equal("""{"token":"s1"}""", ok!.Args);
        Assert.Equal("""{"out":"r1"}""", ok.Result);
        var dead = await withB.Store.GetAsync(failed, Timeout);
        Assert.Equal(new TaskError("Boom", "refused s2", "stack of s2"), dead!.Error);
        Assert.Equal(new TaskError("Boom", "refused s2", "stack of s2"), Assert.Single(dead.Errors).Error);
        Assert.Equal(TaskState.Dead, dead.State);
        Assert.Equal("""{"token":"s3"}""", (await withB.Store.GetAsync(queued, Timeout))!.Args);
        Assert.StartsWith("\"cv1.X.", (await _stored.Store.GetAsync(unknown, Timeout))!.Args, StringComparison.Ordinal);
        Assert.Equal("""{"token":"s5"}""", (await _stored.Store.GetAsync(clear, Timeout))!.Args);

        var again = await RotateAsync(rotation);
        Assert.Empty(again.RewrittenByKey);
        Assert.Equal(0, again.TasksRewritten);
        Assert.Equal(values.Order(), (await StoredValuesAsync()).Order());
    }

    [Fact]
    public async Task Values_in_clear_are_encrypted_only_when_asked()
    {
        var clear = await RunAsync(_stored, """{"token":"s1"}""", error: new TaskError("Boom", "refused s1", null));
        var rotation = With(KeyB, KeyA);

        var left = await RotateAsync(rotation);
        Assert.Equal(3, left.PlaintextLeft);
        Assert.Equal("""{"token":"s1"}""", (await _stored.Store.GetAsync(clear, Timeout))!.Args);

        var encrypted = await RotateAsync(rotation, includePlaintext: true);

        Assert.Equal(3, encrypted.PlaintextEncrypted);
        Assert.Equal(1, encrypted.TasksRewritten);
        var stored = await _stored.Store.GetAsync(clear, Timeout);
        Assert.StartsWith("\"cv1.B.", stored!.Args, StringComparison.Ordinal);
        Assert.StartsWith("cv1.B.", stored.Error!.Message, StringComparison.Ordinal);
        Assert.Null(stored.Error.Detail);
        var read = await With(KeyB).Store.GetAsync(clear, Timeout);
        Assert.Equal("""{"token":"s1"}""", read!.Args);
        Assert.Equal("refused s1", Assert.Single(read.Errors).Error.Message);
        Assert.Equal(0, (await RotateAsync(rotation, includePlaintext: true)).TasksRewritten);
    }

    [Fact]
    public async Task A_cancelled_rotation_stops()
    {
        await RunAsync(With(KeyA), """{"token":"s1"}""");
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            PayloadRotation.RunAsync(With(KeyB, KeyA), new PayloadCipher(new PayloadKeyRing([KeyB, KeyA])), new PayloadRotationOptions(), null, cancelled.Token));

        Assert.StartsWith("\"cv1.A.", Assert.Single((await _stored.Store.ListAsync(new TaskQuery(), Timeout)).Items).Args, StringComparison.Ordinal);
    }
}
