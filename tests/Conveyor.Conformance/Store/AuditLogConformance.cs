namespace Conveyor.Conformance;

/// <summary>The audit log of the store role (<see cref="IAuditLog"/>): entries appended whole, listed newest first with
/// filters and cursor paging, and deleted oldest first by retention.</summary>
public abstract class AuditLogConformance<TFactory>() : ConformanceTest(new TFactory())
    where TFactory : IConformanceBackendFactory, new()
{
    private IAuditLog Audit => Backend.Audit ?? throw new InvalidOperationException($"{Backend.Name} keeps no audit log.");

    private static AuditEntry Entry(string action, DateTimeOffset at, string actor = "k1", string? target = null) =>
        new(Guid.CreateVersion7(at), DateTimeOffset.FromUnixTimeMilliseconds(at.ToUnixTimeMilliseconds()), actor, AuditActorKinds.ApiKey,
            action, target, AuditOutcomes.Ok, 200, "203.0.113.7", "curl/8", """{"count":2}""");

    private async Task<List<AuditEntry>> AppendAsync(params AuditEntry[] entries)
    {
        foreach (var entry in entries)
        {
            await Audit.AppendAuditAsync(entry, Timeout);
        }
        return [.. entries];
    }

    [Fact]
    public async Task An_entry_is_stored_whole_and_optional_fields_stay_null()
    {
        var full = Entry("task.cancel", Now, target: "0193a5b0-0000-7000-8000-000000000001");
        var bare = new AuditEntry(Guid.CreateVersion7(Now), Now.AddMilliseconds(1), "cli", AuditActorKinds.Cli, "queue.pause", null, AuditOutcomes.Failed);
        await AppendAsync(full, bare);

        var page = await Audit.ListAuditAsync(new AuditQuery(), Timeout);

        Assert.Equal([bare, full], page.Entries);
        Assert.Null(page.Next);
    }

    [Fact]
    public async Task Entries_are_listed_newest_first_whatever_the_append_order_and_ties_by_id()
    {
        var older = Entry("task.cancel", Now);
        var newer = Entry("task.retry", Now.AddSeconds(5));
        var tieA = Entry("queue.pause", Now.AddSeconds(2)) with { Id = Guid.Parse("00000000-0000-7000-8000-00000000000a") };
        var tieB = tieA with { Id = Guid.Parse("00000000-0000-7000-8000-00000000000b"), Action = "queue.resume" };
        await AppendAsync(newer, tieA, older, tieB);

        var page = await Audit.ListAuditAsync(new AuditQuery(), Timeout);

        Assert.Equal([newer, tieB, tieA, older], page.Entries);
    }

    [Fact]
    public async Task Filters_select_by_action_prefix_actor_and_time_range()
    {
        var entries = await AppendAsync(
            Entry("task.cancel", Now, "k1"),
            Entry("task.retry", Now.AddSeconds(1), "k2"),
            Entry("tasks.purge", Now.AddSeconds(2), "k1"),
            Entry("queue.pause", Now.AddSeconds(3), "loopback"),
            Entry("task.cancel", Now.AddSeconds(4), "k2"));

        async Task<List<string>> Actions(AuditQuery query) =>
            (await Audit.ListAuditAsync(query, Timeout)).Entries.Select(e => $"{e.Action}@{e.Actor}").ToList();

        Assert.Equal(["task.cancel@k2", "task.retry@k2", "task.cancel@k1"], await Actions(new AuditQuery(ActionPrefix: "task.")));
        Assert.Equal(["task.cancel@k2", "tasks.purge@k1", "task.retry@k2", "task.cancel@k1"], await Actions(new AuditQuery(ActionPrefix: "task")));
        Assert.Equal(["task.cancel@k2", "task.retry@k2"], await Actions(new AuditQuery(Actor: "k2")));
        Assert.Equal(["queue.pause@loopback", "tasks.purge@k1", "task.retry@k2"],
            await Actions(new AuditQuery(Since: entries[1].At, Until: entries[3].At)));
        Assert.Equal(["task.cancel@k1"], await Actions(new AuditQuery(ActionPrefix: "task.c", Actor: "k1", Until: entries[3].At)));
        Assert.Empty(await Actions(new AuditQuery(ActionPrefix: "task%")));
        Assert.Empty(await Actions(new AuditQuery(Actor: "k")));
    }

    [Fact]
    public async Task Paging_walks_every_entry_once_newest_first_under_a_filter()
    {
        var entries = new List<AuditEntry>();
        for (var i = 0; i < 12; i++)
        {
            // Pairs share a millisecond so that pages also split ties.
            entries.Add(Entry(i % 3 == 0 ? "queue.pause" : "task.cancel", Now.AddMilliseconds(i / 2), target: $"t{i}"));
        }
        await AppendAsync([.. entries]);
        var expected = entries.Where(e => e.Action == "task.cancel")
            .OrderByDescending(e => e.At).ThenByDescending(e => e.IdText, StringComparer.Ordinal).ToList();

        var seen = new List<AuditEntry>();
        AuditCursor? cursor = null;
        var pages = 0;
        do
        {
            var page = await Audit.ListAuditAsync(new AuditQuery(ActionPrefix: "task.", After: cursor, Limit: 3), Timeout);
            Assert.True(page.Entries.Count <= 3);
            seen.AddRange(page.Entries);
            cursor = page.Next;
            pages++;
        }
        while (cursor is not null && pages < 10);

        Assert.Equal(expected, seen);
        Assert.Equal(3, pages);
    }

    [Fact]
    public async Task Retention_deletes_the_oldest_entries_before_a_time_in_batches()
    {
        var entries = await AppendAsync(
            Entry("task.cancel", Now.AddDays(-100)),
            Entry("task.retry", Now.AddDays(-95)),
            Entry("queue.pause", Now.AddDays(-91)),
            Entry("queue.resume", Now.AddDays(-1)));
        var before = Now.AddDays(-90);

        Assert.Equal(2, await Audit.DeleteAuditBeforeAsync(before, 2, Timeout));
        Assert.Equal([entries[3], entries[2]], (await Audit.ListAuditAsync(new AuditQuery(), Timeout)).Entries);
        Assert.Equal(1, await Audit.DeleteAuditBeforeAsync(before, 2, Timeout));
        Assert.Equal(0, await Audit.DeleteAuditBeforeAsync(before, 2, Timeout));
        Assert.Equal([entries[3]], (await Audit.ListAuditAsync(new AuditQuery(), Timeout)).Entries);
    }
}
