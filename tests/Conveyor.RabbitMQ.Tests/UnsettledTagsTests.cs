using Conveyor.RabbitMQ;

namespace Conveyor.RabbitMQ.Tests;

/// <summary>How the acks of a batch are planned: one multiple ack over the batch's and the deferred tags below every
/// other unsettled tag of the channel, the rest deferred (or sent one by one past the limit, or when flushed), never a
/// tag covered twice nor one still unsettled.</summary>
public sealed class UnsettledTagsTests
{
    private readonly object _channel = new();
    private readonly object _other = new();

    private static UnsettledTags<object> Received(object channel, params ulong[] tags) => Received(64, channel, tags);

    private static UnsettledTags<object> Received(int maxDeferred, object channel, params ulong[] tags)
    {
        var unsettled = new UnsettledTags<object>(maxDeferred);
        foreach (var tag in tags)
        {
            unsettled.Add(channel, tag);
        }
        return unsettled;
    }

    [Fact]
    public void A_batch_of_the_lowest_unsettled_tags_is_one_multiple_ack_at_its_highest()
    {
        var unsettled = Received(_channel, 1, 2, 3, 4, 5, 6);

        var plan = unsettled.PlanAcks([(_channel, 3UL), (_channel, 1UL), (_channel, 2UL)]);

        Assert.Equal([(_channel, 3UL, true)], plan);
        Assert.Empty(unsettled.FlushDeferred());
    }

    [Fact]
    public void Tags_above_one_still_unsettled_wait_and_go_with_it_once_it_settles()
    {
        // 3 is held for a task still running: a multiple ack at 5 would ack it too.
        var unsettled = Received(_channel, 1, 2, 3, 4, 5, 6);

        Assert.Equal([(_channel, 2UL, true)], unsettled.PlanAcks([(_channel, 1UL), (_channel, 2UL), (_channel, 4UL), (_channel, 5UL)]));

        // Once 3 settles, one frame acks 3, 4 and 5; 6 is still unsettled, so nothing beyond.
        Assert.Equal([(_channel, 5UL, true)], unsettled.PlanAcks([(_channel, 3UL)]));
        Assert.Empty(unsettled.FlushDeferred());
    }

    [Fact]
    public void Deferred_acks_are_sent_one_by_one_when_flushed()
    {
        var unsettled = Received(_channel, 1, 2, 3);

        Assert.Empty(unsettled.PlanAcks([(_channel, 2UL), (_channel, 3UL)]));

        Assert.Equal([(_channel, 2UL, false), (_channel, 3UL, false)], unsettled.FlushDeferred());
        // Flushed once: 1 settling later acks itself alone.
        Assert.Equal([(_channel, 1UL, false)], unsettled.PlanAcks([(_channel, 1UL)]));
    }

    [Fact]
    public void Past_the_limit_the_deferred_acks_go_at_once()
    {
        var unsettled = Received(2, _channel, 1, 2, 3, 4);

        Assert.Empty(unsettled.PlanAcks([(_channel, 2UL), (_channel, 3UL)]));
        Assert.Equal([(_channel, 2UL, false), (_channel, 3UL, false), (_channel, 4UL, false)], unsettled.PlanAcks([(_channel, 4UL)]));
        Assert.Empty(unsettled.FlushDeferred());
    }

    [Fact]
    public void A_tag_requeued_or_rejected_no_longer_bounds_the_next_multiple_ack()
    {
        var unsettled = Received(_channel, 1, 2, 3, 4);
        unsettled.Remove([(_channel, 1UL)]);

        Assert.Equal([(_channel, 4UL, true)], unsettled.PlanAcks([(_channel, 2UL), (_channel, 3UL), (_channel, 4UL)]));
    }

    [Fact]
    public void Each_channel_is_planned_on_its_own_tags()
    {
        var unsettled = Received(_channel, 1, 2, 3);
        unsettled.Add(_other, 1);
        unsettled.Add(_other, 2);

        var plan = unsettled.PlanAcks([(_channel, 1UL), (_channel, 2UL), (_other, 2UL)]);

        Assert.Equal([(_channel, 2UL, true)], plan);
        Assert.Equal([(_other, 2UL, false)], unsettled.FlushDeferred());
    }

    [Fact]
    public void A_single_delivery_is_a_single_ack_and_a_tag_given_twice_is_acked_once()
    {
        var unsettled = Received(_channel, 7, 8);

        Assert.Equal([(_channel, 7UL, false)], unsettled.PlanAcks([(_channel, 7UL), (_channel, 7UL)]));
    }

    [Fact]
    public void After_the_channels_are_replaced_their_old_tags_bound_nothing()
    {
        var unsettled = Received(_channel, 1, 2, 3);
        Assert.Empty(unsettled.PlanAcks([(_channel, 3UL)]));
        unsettled.Clear();
        unsettled.Add(_other, 1);
        unsettled.Add(_other, 2);

        Assert.Equal([(_other, 2UL, true)], unsettled.PlanAcks([(_other, 1UL), (_other, 2UL)]));
        Assert.Empty(unsettled.FlushDeferred());
    }
}
