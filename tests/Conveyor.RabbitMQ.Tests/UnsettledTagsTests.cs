using Conveyor.RabbitMQ;

namespace Conveyor.RabbitMQ.Tests;

/// <summary>How the acks of a batch are planned: one multiple ack where the batch's tags run below every other unsettled
/// tag of the channel, single acks for the rest, never a tag covered twice.</summary>
public sealed class UnsettledTagsTests
{
    private readonly object _channel = new();
    private readonly object _other = new();

    private static UnsettledTags<object> Received(object channel, params ulong[] tags)
    {
        var unsettled = new UnsettledTags<object>();
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
    }

    [Fact]
    public void Tags_above_one_still_unsettled_are_acked_one_by_one()
    {
        // 3 is held for a task still running: a multiple ack at 5 would ack it too.
        var unsettled = Received(_channel, 1, 2, 3, 4, 5);

        var plan = unsettled.PlanAcks([(_channel, 1UL), (_channel, 2UL), (_channel, 4UL), (_channel, 5UL)]);

        Assert.Equal(3, plan.Count);
        Assert.Contains((_channel, 2UL, true), plan);
        Assert.Contains((_channel, 4UL, false), plan);
        Assert.Contains((_channel, 5UL, false), plan);

        // Once 3 settles alone, nothing below it is left: a single ack.
        Assert.Equal([(_channel, 3UL, false)], unsettled.PlanAcks([(_channel, 3UL)]));
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

        Assert.Equal(2, plan.Count);
        Assert.Contains((_channel, 2UL, true), plan);
        Assert.Contains((_other, 2UL, false), plan);
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
        unsettled.Clear();
        unsettled.Add(_other, 1);
        unsettled.Add(_other, 2);

        Assert.Equal([(_other, 2UL, true)], unsettled.PlanAcks([(_other, 1UL), (_other, 2UL)]));
    }
}
