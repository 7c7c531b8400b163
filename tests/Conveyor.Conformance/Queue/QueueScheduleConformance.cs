namespace Conveyor.Conformance;

/// <summary>Queue role: ETAs, retries at a time, promotion of due messages and the next due time.</summary>
public abstract class QueueScheduleConformance<TFactory>() : ConformanceTest(new TFactory())
    where TFactory : IConformanceBackendFactory, new()
{
    [Fact]
    public async Task Message_with_a_future_eta_is_scheduled_and_not_fetched()
    {
        var message = NewMessage() with { NotBefore = Now.AddMinutes(10) };

        var result = await EnqueueAsync(message);

        Assert.Equal(TaskState.Scheduled, result.State);
        Assert.Equal(TaskState.Scheduled, await StateOf(message.Id));
        Assert.Equal(message.NotBefore, (await GetAsync(message.Id)).NotBefore);
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task Scheduled_message_is_not_promoted_before_its_eta()
    {
        var message = NewMessage() with { NotBefore = Now.AddMinutes(10) };
        await EnqueueAsync(message);
        Advance(TimeSpan.FromMinutes(10) - TimeSpan.FromMilliseconds(1));

        var promoted = await Queue.PromoteDueAsync(Timeout);

        Assert.Equal(0, promoted);
        Assert.Equal(TaskState.Scheduled, await StateOf(message.Id));
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task Scheduled_message_is_fetchable_once_its_eta_has_come_and_it_is_promoted()
    {
        var message = NewMessage() with { NotBefore = Now.AddMinutes(10) };
        await EnqueueAsync(message);
        Advance(TimeSpan.FromMinutes(10));

        var promoted = await Queue.PromoteDueAsync(Timeout);

        Assert.Equal(1, promoted);
        Assert.Equal(TaskState.Queued, await StateOf(message.Id));
        var lease = await FetchOneAsync();
        Assert.Equal(message.Id, lease.Message.Id);
        Assert.Equal(1, lease.Attempt);
    }

    [Fact]
    public async Task Promote_due_promotes_only_the_due_messages()
    {
        await Queue.EnqueueAsync(
        [
            NewMessage() with { NotBefore = Now.AddSeconds(1) },
            NewMessage() with { NotBefore = Now.AddSeconds(2) },
            NewMessage() with { NotBefore = Now.AddSeconds(3) },
        ], Timeout);
        Advance(TimeSpan.FromSeconds(2));

        Assert.Equal(2, await Queue.PromoteDueAsync(Timeout));
        Assert.Equal(0, await Queue.PromoteDueAsync(Timeout));
        Assert.Equal(2, (await FetchAsync()).Count);
    }

    [Fact]
    public async Task Next_due_is_null_when_nothing_is_scheduled()
    {
        await EnqueueAsync(NewMessage());

        Assert.Null(await Queue.NextDueAsync(Timeout));
    }

    [Fact]
    public async Task Next_due_is_the_earliest_eta_among_scheduled_messages()
    {
        var earliest = Now.AddSeconds(30);
        await Queue.EnqueueAsync(
        [
            NewMessage() with { NotBefore = Now.AddMinutes(5) },
            NewMessage() with { NotBefore = earliest },
            NewMessage() with { NotBefore = Now.AddHours(1) },
        ], Timeout);

        Assert.Equal(earliest, await Queue.NextDueAsync(Timeout));
    }

    [Fact]
    public async Task Next_due_moves_on_once_the_earliest_is_promoted()
    {
        var later = Now.AddMinutes(5);
        await Queue.EnqueueAsync([NewMessage() with { NotBefore = Now.AddSeconds(30) }, NewMessage() with { NotBefore = later }], Timeout);
        Advance(TimeSpan.FromSeconds(30));

        await Queue.PromoteDueAsync(Timeout);

        Assert.Equal(later, await Queue.NextDueAsync(Timeout));
    }

    [Fact]
    public async Task Retry_at_a_time_puts_the_task_in_retrying_with_the_error()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();
        var retryAt = Now.AddSeconds(20);
        var error = new TaskError("System.Net.Http.HttpRequestException", "503");

        await RetryAtAsync(lease, retryAt, error);

        var record = await GetAsync(lease.Message.Id);
        Assert.Equal(TaskState.Retrying, record.State);
        Assert.Equal(retryAt, record.NotBefore);
        Assert.Equal(error, record.Error);
        Assert.Null(record.FinishedAt);
        Assert.Equal(WorkerId, record.WorkerId); // the worker of the last attempt stays on the task
        Assert.Equal(1, record.Attempts);
    }

    [Fact]
    public async Task Retrying_task_is_not_fetchable_before_its_retry_time()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();
        await RetryAtAsync(lease, Now.AddSeconds(20));
        Advance(TimeSpan.FromSeconds(19));

        Assert.Equal(0, await Queue.PromoteDueAsync(Timeout));
        Assert.Empty(await FetchAsync());
        Assert.Equal(TaskState.Retrying, await StateOf(lease.Message.Id));
    }

    [Fact]
    public async Task Retrying_task_is_fetchable_after_its_retry_time_and_promotion_with_the_next_attempt()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();
        await RetryAtAsync(lease, Now.AddSeconds(20));
        Advance(TimeSpan.FromSeconds(20));

        Assert.Equal(1, await Queue.PromoteDueAsync(Timeout));

        var next = await FetchOneAsync();
        Assert.Equal(lease.Message.Id, next.Message.Id);
        Assert.Equal(2, next.Attempt);
        Assert.False(next.IsRedelivery);
    }

    [Fact]
    public async Task Next_due_includes_retry_times()
    {
        await EnqueueAsync(NewMessage() with { NotBefore = Now.AddHours(1) });
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();
        var retryAt = Now.AddSeconds(20);

        await RetryAtAsync(lease, retryAt);

        Assert.Equal(retryAt, await Queue.NextDueAsync(Timeout));
    }

    [Fact]
    public async Task Retry_at_a_time_already_past_is_promoted_at_the_next_promotion()
    {
        await EnqueueAsync(NewMessage());
        var lease = await FetchOneAsync();

        await RetryAtAsync(lease, Now);

        Assert.Equal(1, await Queue.PromoteDueAsync(Timeout));
        Assert.Equal(2, (await FetchOneAsync()).Attempt);
    }

    [Fact]
    public async Task Promoted_messages_keep_priority_order()
    {
        var low = NewMessage(priority: 0) with { NotBefore = Now.AddSeconds(1) };
        var high = NewMessage(priority: 9) with { NotBefore = Now.AddSeconds(2) };
        await Queue.EnqueueAsync([low, high], Timeout);
        Advance(TimeSpan.FromSeconds(2));

        await Queue.PromoteDueAsync(Timeout);

        Assert.Equal([high.Id, low.Id], (await FetchAsync()).Select(l => l.Message.Id));
    }
}
