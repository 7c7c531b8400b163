using Conveyor.Backends;
using Conveyor.Conformance;

namespace Conveyor.Redis.Tests;

public sealed class RedisStoreTests : StoreConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => RedisTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => RedisTestBackend.DisposeAsync(backend);
}

public sealed class RedisStoreListTests : StoreListConformance
{
    protected override Task<IConveyorBackend> CreateBackendAsync(TimeProvider time) => RedisTestBackend.CreateAsync(time);

    protected override ValueTask DisposeBackendAsync(IConveyorBackend backend) => RedisTestBackend.DisposeAsync(backend);

    [Fact]
    public async Task A_cursor_beyond_every_sequence_is_refused()
    {
        // Sequences stay below 2^44, the ready set's priority band: a larger cursor would make the bands overlap.
        await EnqueueManyAsync(3);

        await Assert.ThrowsAnyAsync<ArgumentException>(() => Store.ListAsync(new TaskQuery { State = TaskState.Queued, Cursor = "99999999999999999" }, Timeout));
        Assert.Equal(3, (await Store.ListAsync(new TaskQuery { State = TaskState.Queued, Cursor = "17592186044416" }, Timeout)).Items.Count);
    }
}
