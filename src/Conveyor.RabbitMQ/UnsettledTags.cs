namespace Conveyor.RabbitMQ;

/// <summary>
/// The delivery tags not yet settled, per channel, so that the acks of a batch go as few <c>basic.ack</c> frames as
/// they can. An ack with <c>multiple</c> set at tag T acks every unacked delivery of its channel up to T, so it is sent
/// only where every unsettled delivery at or below T is one to ack: the acks of a batch below every other unsettled tag
/// go as one frame, and those above one (a delivery still held for a running task, or buffered) are deferred, to be
/// covered by a later multiple ack once the tags below them settle, or sent one frame each when more than
/// <c>maxDeferred</c> wait on a channel or at the next <see cref="FlushDeferred"/> (the sweep's, every poll interval),
/// so that a long task's delivery cannot keep the acks behind it from the broker for long. A delivery settled twice
/// closes the channel (unknown delivery tag), so the caller must send each plan before it plans or sends any other
/// settlement of these channels, and must have added every delivery when it arrived, in tag order.
/// </summary>
/// <typeparam name="TChannel">The channel (its tags mean nothing on another).</typeparam>
internal sealed class UnsettledTags<TChannel>
    where TChannel : class
{
    private readonly Lock _lock = new();
    private readonly Dictionary<TChannel, SortedSet<ulong>> _tags = new(ReferenceEqualityComparer.Instance);
    // Acks planned but not sent: above a tag still unsettled when they were planned.
    private readonly Dictionary<TChannel, SortedSet<ulong>> _deferred = new(ReferenceEqualityComparer.Instance);
    private readonly int _maxDeferred;

    /// <param name="maxDeferred">Acks deferred on a channel beyond which they are sent at once, one frame each.</param>
    public UnsettledTags(int maxDeferred = 64) => _maxDeferred = maxDeferred;

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
            _deferred.Clear();
        }
    }

    /// <summary>Takes the deferred acks, one frame each.</summary>
    public List<(TChannel Channel, ulong Tag, bool Multiple)> FlushDeferred()
    {
        var plan = new List<(TChannel, ulong, bool)>();
        lock (_lock)
        {
            foreach (var (channel, deferred) in _deferred)
            {
                foreach (var tag in deferred)
                {
                    plan.Add((channel, tag, false));
                }
            }
            _deferred.Clear();
        }
        return plan;
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

    /// <summary>Takes the deliveries to ack, and says which frames to send now: per channel, at most one multiple ack
    /// (or a single one, for one tag), covering this batch's and the deferred acks below every other unsettled tag; the
    /// rest are deferred, unless more than the limit wait, when they are sent one frame each.</summary>
    public List<(TChannel Channel, ulong Tag, bool Multiple)> PlanAcks(IEnumerable<(TChannel Channel, ulong Tag)> deliveries)
    {
        var plan = new List<(TChannel, ulong, bool)>();
        lock (_lock)
        {
            foreach (var group in deliveries.GroupBy(d => d.Channel, d => d.Tag, ReferenceEqualityComparer.Instance))
            {
                var channel = (TChannel)group.Key!;
                if (!_deferred.TryGetValue(channel, out var deferred))
                {
                    _deferred[channel] = deferred = [];
                }
                var lowestOther = ulong.MaxValue;
                _tags.TryGetValue(channel, out var tags);
                foreach (var tag in group)
                {
                    tags?.Remove(tag);
                    deferred.Add(tag);
                }
                if (tags is { Count: > 0 })
                {
                    lowestOther = tags.Min;
                }
                else if (tags is not null)
                {
                    _tags.Remove(channel);
                }
                if (deferred.Min < lowestOther)
                {
                    var covered = deferred.GetViewBetween(deferred.Min, lowestOther - 1);
                    plan.Add((channel, covered.Max, covered.Count > 1));
                    covered.Clear();
                }
                if (deferred.Count > _maxDeferred)
                {
                    foreach (var tag in deferred)
                    {
                        plan.Add((channel, tag, false));
                    }
                    deferred.Clear();
                }
                if (deferred.Count == 0)
                {
                    _deferred.Remove(channel);
                }
            }
        }
        return plan;
    }
}
