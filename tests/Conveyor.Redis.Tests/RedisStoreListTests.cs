using Conveyor.Backends;

namespace Conveyor.Redis.Tests;

// Registered with the other suites in RedisConformance.cs; what only Redis has to say about listing is here.
public sealed partial class RedisStoreListTests
{
    [Fact]
    public async Task A_cursor_beyond_every_sequence_is_refused()
    {
        // Sequences stay below 2^44, the ready set's priority band: a larger cursor would make the bands overlap.
        await EnqueueManyAsync(3);

        await Assert.ThrowsAnyAsync<ArgumentException>(() => Store.ListAsync(new TaskQuery { State = TaskState.Queued, Cursor = "99999999999999999" }, Timeout));
        Assert.Equal(3, (await Store.ListAsync(new TaskQuery { State = TaskState.Queued, Cursor = "17592186044416" }, Timeout)).Items.Count);
    }
}
