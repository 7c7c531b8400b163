namespace Conveyor.Conformance;

/// <summary>Compare-and-set rewrites of stored payloads (<see cref="IPayloadStore"/>, for key rotation): a task's
/// arguments, result, last error and attempt errors are replaced when they are still the ones read, and left alone when
/// a completion changed them in between.</summary>
public abstract class PayloadRewriteConformance<TFactory>() : ConformanceTest(new TFactory())
    where TFactory : IConformanceBackendFactory, new()
{
    private IPayloadStore Payloads => Backend.Payloads ?? throw new InvalidOperationException($"{Backend.Name} cannot rewrite payloads.");

    private static StoredPayload Rewritten(StoredPayload payload) => new(
        payload.Args is null ? null : "\"new args\"",
        payload.Result is null ? null : "\"new result\"",
        payload.Error is null ? null : payload.Error with { Message = "new message", Detail = "new detail" },
        [.. payload.Errors.Select(e => e with { Error = e.Error with { Message = $"new message {e.Attempt}", Detail = null } })]);

    [Fact]
    public async Task Every_payload_field_is_rewritten_when_unchanged_and_nothing_else_is()
    {
        var failed = (await EnqueueAsync(NewMessage() with { Args = """{"n":1}""" })).Id;
        await DeadAsync(await FetchOneAsync());
        var succeeded = (await EnqueueAsync(NewMessage() with { Args = """{"n":2}""" })).Id;
        await SucceedAsync(await FetchOneAsync(), """{"ok":true}""");
        var before = new[] { await GetAsync(failed), await GetAsync(succeeded) };
        Assert.NotNull(before[0].Error);
        Assert.Single(before[0].Errors);

        var outcome = await Payloads.RewritePayloadsAsync(
            [.. before.Select(r => new PayloadRewrite(r.Id, StoredPayload.From(r), Rewritten(StoredPayload.From(r))))], Timeout);

        Assert.Equal(2, outcome.Rewritten);
        Assert.Empty(outcome.Skipped);
        foreach (var old in before)
        {
            var now = await GetAsync(old.Id);
            Assert.Equal(Rewritten(StoredPayload.From(old)), StoredPayload.From(now));
            Assert.Equal((old.State, old.Attempts, old.Task, old.Queue, old.CreatedAt, old.FinishedAt, old.WorkerId),
                (now.State, now.Attempts, now.Task, now.Queue, now.CreatedAt, now.FinishedAt, now.WorkerId));
            Assert.Equal(old.Transitions, now.Transitions);
        }
        Assert.Equal("\"new args\"", (await GetAsync(succeeded)).Args);
        Assert.Equal("new message 1", Assert.Single((await GetAsync(failed)).Errors).Error.Message);
    }

    [Fact]
    public async Task A_rewrite_is_refused_when_a_field_changed_after_the_read()
    {
        var ids = await EnqueueManyAsync(3);
        var leases = await FetchAsync(3);
        var read = new List<TaskRecord>();
        foreach (var id in ids)
        {
            read.Add(await GetAsync(id));
        }
        // Between the read and the rewrite: one task succeeds (result), one fails (errors); the third is left as read.
        await SucceedAsync(leases.Single(l => l.Message.Id == ids[0]), """{"done":1}""");
        await DeadAsync(leases.Single(l => l.Message.Id == ids[1]));
        var missing = Guid.CreateVersion7();
        var stale = new StoredPayload("\"rotated\"", null, null, []);

        var outcome = await Payloads.RewritePayloadsAsync(
        [
            .. read.Select(r => new PayloadRewrite(r.Id, StoredPayload.From(r), stale)),
            new PayloadRewrite(missing, stale, stale),
        ], Timeout);

        Assert.Equal(1, outcome.Rewritten);
        Assert.Equal(new[] { ids[0], ids[1], missing }.Order(), outcome.Skipped.Order());
        Assert.Equal("""{"done":1}""", (await GetAsync(ids[0])).Result?.Replace(" ", "", StringComparison.Ordinal));
        Assert.Null((await GetAsync(ids[0])).Args);
        Assert.NotNull((await GetAsync(ids[1])).Error);
        Assert.Single((await GetAsync(ids[1])).Errors);
        Assert.Equal("\"rotated\"", (await GetAsync(ids[2])).Args);
    }

    [Fact]
    public async Task A_rewrite_with_a_stale_expected_value_is_refused()
    {
        var id = (await EnqueueAsync(NewMessage() with { Args = """{"n":1}""" })).Id;
        var stored = StoredPayload.From(await GetAsync(id));

        var outcome = await Payloads.RewritePayloadsAsync(
            [new PayloadRewrite(id, stored with { Args = """{"n":0}""" }, stored with { Args = "\"rotated\"" })], Timeout);

        Assert.Equal(0, outcome.Rewritten);
        Assert.Equal([id], outcome.Skipped);
        Assert.Equal("""{"n":1}""", (await GetAsync(id)).Args);
    }
}
