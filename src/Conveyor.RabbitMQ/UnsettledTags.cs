namespace Conveyor.RabbitMQ;

/// <summary>
/// The delivery tags not yet settled, per channel, so that the acks of a batch go as few <c>basic.ack</c> frames as
/// they can: one with <c>multiple</c> set at the highest tag of the batch that is below every other unsettled tag of its
/// channel (the broker then acks every unacked delivery up to it, all of them the batch's), and one frame each for the
/// rest. A delivery settled twice closes the channel (unknown delivery tag), so the caller must send each plan before
/// it plans or sends any other settlement of these channels, and must have added every delivery when it arrived.
/// </summary>
/// <typeparam name="TChannel">The channel (its tags mean nothing on another).</typeparam>
internal sealed class UnsettledTags<TChannel>
    where TChannel : class
{
    private readonly Lock _lock = new();
    private readonly Dictionary<TChannel, SortedSet<ulong>> _tags = new(ReferenceEqualityComparer.Instance);

    /// <summary>Records a delivery when it arrives.</summary>
    public void Add(TChannel channel, ulong tag)
    {
        lock (_lock)
        {
            if (!_tags.TryGetValue(channel, out var tags))
            {
                _tags[channel] = tags = [];
            }
            tags.Add(tag);
        }
    }

    /// <summary>Forgets every channel's tags: the channels were replaced, and their deliveries come again on new ones.</summary>
    public void Clear()
    {
        lock (_lock)
        {
            _tags.Clear();
        }
    }

    /// <summary>Takes deliveries settled otherwise than by an ack (requeued, rejected): each is its own frame.</summary>
    public void Remove(IEnumerable<(TChannel Channel, ulong Tag)> deliveries)
    {
        lock (_lock)
        {
            foreach (var (channel, tag) in deliveries)
            {
                if (_tags.TryGetValue(channel, out var tags) && tags.Remove(tag) && tags.Count == 0)
                {
                    _tags.Remove(channel);
                }
            }
        }
    }

    /// <summary>Takes the deliveries to ack, and says how: per channel, at most one multiple ack and single acks for
    /// the rest, in the order to send them.</summary>
    public List<(TChannel Channel, ulong Tag, bool Multiple)> PlanAcks(IEnumerable<(TChannel Channel, ulong Tag)> deliveries)
    {
        var plan = new List<(TChannel, ulong, bool)>();
        lock (_lock)
        {
            foreach (var group in deliveries.GroupBy(d => d.Channel, d => d.Tag, ReferenceEqualityComparer.Instance))
            {
                var channel = (TChannel)group.Key!;
                var lowestOther = ulong.MaxValue;
                if (_tags.TryGetValue(channel, out var tags))
                {
                    foreach (var tag in group)
                    {
                        tags.Remove(tag);
                    }
                    if (tags.Count == 0)
                    {
                        _tags.Remove(channel);
                    }
                    else
                    {
                        lowestOther = tags.Min;
                    }
                }
                var below = 0;
                var highestBelow = 0UL;
                foreach (var tag in group.Distinct())
                {
                    if (tag < lowestOther)
                    {
                        below++;
                        highestBelow = Math.Max(highestBelow, tag);
                    }
                    else
                    {
                        plan.Add((channel, tag, false));
                    }
                }
                if (below > 0)
                {
                    plan.Add((channel, highestBelow, below > 1));
                }
            }
        }
        return plan;
    }
}
