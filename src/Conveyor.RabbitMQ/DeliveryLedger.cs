using RabbitMQ.Client;

namespace Conveyor.RabbitMQ;

/// <summary>A delivery, acked on the channel it came from (its tag means nothing on another).</summary>
internal readonly record struct Delivery(IChannel Channel, ulong Tag);

/// <summary>What became of a delivery of a task when it arrived.</summary>
internal enum Arrival
{
    /// <summary>Not matched to a lease yet: waits in the buffer, and is a ready signal.</summary>
    Buffered,
    /// <summary>Its task is leased here: held unacked until the attempt settles.</summary>
    Held,
    /// <summary>Its task's attempt already settled here: ack it at once.</summary>
    Settled,
}

/// <summary>
/// Which delivery belongs to which task, in one backend instance: deliveries waiting for a lease (the buffer), those
/// held unacked while their task runs here, and the tasks leased or settled here before their delivery arrived. Only
/// bookkeeping under one lock; acks are the caller's (<see cref="RabbitMqDeliveries"/>).
/// </summary>
internal sealed class DeliveryLedger
{
    /// <summary>How many settled-before-delivered tasks are remembered: a delivery may go to another process's consumer
    /// instead, so the oldest entries are forgotten (the sweep still drops such a delivery, with one store lookup).</summary>
    private const int SettledUndeliveredLimit = 16_384;

    private readonly Lock _lock = new();
    // Deliveries not matched to a lease yet, by task id.
    private readonly Dictionary<Guid, List<Delivery>> _buffer = [];
    // Deliveries of tasks leased here, unacked until the attempt settles.
    private readonly Dictionary<Guid, List<Delivery>> _held = [];
    // Tasks leased here before their delivery arrived (the store's fetch does not wait for it): the delivery is
    // held when it comes. Without this, nearly every delivery would arrive after its task was leased (or done),
    // wait in the buffer as stale until a sweep looked it up, and the broker queue would grow whenever tasks are
    // enqueued faster than the sweep drains (prefetch per PollInterval).
    private readonly HashSet<Guid> _leasedUndelivered = [];
    // Tasks settled here before their delivery arrived: the delivery is acked at once when it comes.
    private readonly HashSet<Guid> _settledUndelivered = [];
    private readonly Queue<Guid> _settledOrder = new();

    /// <summary>Records a delivery of task <paramref name="id"/>.</summary>
    public Arrival Receive(Guid id, Delivery delivery)
    {
        lock (_lock)
        {
            if (_held.TryGetValue(id, out var held))
            {
                // Another delivery of a task running here (a redelivery): settled with it.
                held.Add(delivery);
                return Arrival.Held;
            }
            if (_leasedUndelivered.Remove(id))
            {
                _held[id] = [delivery];
                return Arrival.Held;
            }
            if (_settledUndelivered.Remove(id))
            {
                return Arrival.Settled;
            }
            if (!_buffer.TryGetValue(id, out var buffered))
            {
                _buffer[id] = buffered = [];
            }
            buffered.Add(delivery);
            return Arrival.Buffered;
        }
    }

    /// <summary>Moves the buffered deliveries of leased tasks to the held set: they stay unacked until the attempt settles.</summary>
    public void Hold(IReadOnlyList<Conveyor.Backends.Lease> leases)
    {
        lock (_lock)
        {
            foreach (var lease in leases)
            {
                var id = lease.Message.Id;
                if (_buffer.Remove(id, out var deliveries))
                {
                    if (_held.TryGetValue(id, out var held))
                    {
                        held.AddRange(deliveries);
                    }
                    else
                    {
                        _held[id] = deliveries;
                    }
                }
                else if (!_held.ContainsKey(id))
                {
                    // Leased before its delivery arrived: held when it comes.
                    _leasedUndelivered.Add(id);
                }
            }
        }
    }

    /// <summary>Takes the buffered deliveries of <paramref name="ids"/>.</summary>
    public List<Delivery> TakeBuffered(IEnumerable<Guid> ids)
    {
        var deliveries = new List<Delivery>();
        lock (_lock)
        {
            foreach (var id in ids)
            {
                if (_buffer.Remove(id, out var buffered))
                {
                    deliveries.AddRange(buffered);
                }
            }
        }
        return deliveries;
    }

    /// <summary>Takes the held deliveries of tasks whose attempt settled here (<paramref name="found"/>: the tasks that
    /// had one); a task whose delivery has not arrived yet has it acked at once when it comes.</summary>
    public List<Delivery> TakeHeld(IEnumerable<Guid> ids, out HashSet<Guid> found)
    {
        var deliveries = new List<Delivery>();
        found = [];
        lock (_lock)
        {
            foreach (var id in ids)
            {
                if (_held.Remove(id, out var held))
                {
                    deliveries.AddRange(held);
                    found.Add(id);
                }
                else if (_leasedUndelivered.Remove(id) && _settledUndelivered.Add(id))
                {
                    _settledOrder.Enqueue(id);
                    while (_settledOrder.Count > SettledUndeliveredLimit)
                    {
                        _settledUndelivered.Remove(_settledOrder.Dequeue());
                    }
                }
            }
        }
        return deliveries;
    }

    /// <summary>How many deliveries are held for tasks leased here (tests wait on it).</summary>
    public int HeldCount
    {
        get
        {
            lock (_lock)
            {
                return _held.Values.Sum(h => h.Count);
            }
        }
    }

    /// <summary>The tasks with buffered deliveries.</summary>
    public Guid[] BufferedIds()
    {
        lock (_lock)
        {
            return [.. _buffer.Keys];
        }
    }

    /// <summary>A new consumer channel: unacked deliveries of the old one go back to the queue and come again on the
    /// new one; those of tasks still leased here are held again when they come.</summary>
    public void ChannelReplaced()
    {
        lock (_lock)
        {
            _buffer.Clear();
            _leasedUndelivered.UnionWith(_held.Keys);
            _held.Clear();
        }
    }
}
