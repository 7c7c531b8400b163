namespace Conveyor.Backends;

/// <summary>The order in which a fetch tries its queues. Backends call it so that every backend weighs queues alike.</summary>
public static class QueueOrder
{
    /// <summary>
    /// The queues of <paramref name="request"/> in the order to take messages from them: as given when
    /// <see cref="FetchRequest.StrictOrder"/> is set; otherwise starting with a queue drawn at random by
    /// weight, then the rest in the order given after it, so that a busy high-weight queue cannot
    /// starve the others and a queue with no work leaves its share to the next.
    /// </summary>
    public static IReadOnlyList<QueueWeight> For(FetchRequest request, Random? random = null)
    {
        ArgumentNullException.ThrowIfNull(request);
        var queues = request.Queues;
        if (request.StrictOrder || queues.Count <= 1)
        {
            return queues;
        }
        var total = 0L;
        foreach (var q in queues)
        {
            total += Math.Max(1, q.Weight);
        }
        var pick = (random ?? Random.Shared).NextInt64(total);
        var first = 0;
        for (var i = 0; i < queues.Count; i++)
        {
            pick -= Math.Max(1, queues[i].Weight);
            if (pick < 0)
            {
                first = i;
                break;
            }
        }
        if (first == 0)
        {
            return queues;
        }
        var ordered = new QueueWeight[queues.Count];
        for (var i = 0; i < queues.Count; i++)
        {
            ordered[i] = queues[(first + i) % queues.Count];
        }
        return ordered;
    }
}
