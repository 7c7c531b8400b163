using System.Collections.Concurrent;
using System.Text;
using Conveyor.Backends;
using Microsoft.Extensions.Logging;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Conveyor.RabbitMQ;

/// <summary>How a delivery is settled.</summary>
internal enum Settle
{
    /// <summary><c>basic.ack</c>: done with it.</summary>
    Ack,
    /// <summary><c>basic.nack</c> with requeue: back to its queue.</summary>
    Requeue,
    /// <summary><c>basic.reject</c> without requeue: the queue's dead-letter exchange takes it.</summary>
    DeadLetter,
}

/// <summary>
/// The consuming side: one consumer per Conveyor queue on the consumer channel, whose deliveries go into the
/// <see cref="DeliveryLedger"/>; acks, requeues and rejects; and the sweep that acks buffered deliveries whose task is
/// no longer queued in the store. A delivery that lands in the buffer (or a wake-up message) is this process's ready
/// signal for its queue.
/// </summary>
internal sealed partial class RabbitMqDeliveries : IAsyncDisposable
{
    private readonly RabbitMqBackendOptions _options;
    private readonly RabbitMqConnection _connection;
    private readonly RabbitMqTopology _topology;
    private readonly IConveyorBackend _store;
    private readonly Action<string> _ready;
    private readonly ILogger _logger;
    private readonly DeliveryLedger _ledger = new();
    // Every delivery from its arrival to its settlement, and one settlement sent at a time, so that an ack can cover a
    // run of deliveries at once (multiple) and none is settled twice.
    private readonly UnsettledTags<IChannel> _unsettled = new();
    private readonly SemaphoreSlim _settling = new(1, 1);
    private readonly ConcurrentDictionary<string, Lazy<Task>> _consumers = new(StringComparer.Ordinal);
    // The channel the consumers were made on: closed by the broker while the connection lives (a channel error), the
    // next fetch opens another (RabbitMqConnection.GetAsync), which forgets them, and makes them again.
    private IChannel? _consumingOn;
    private long _lastSweep = long.MinValue;
    private bool _lastSweepDropped;
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _sweeperGate = new();
    private Task? _sweeper;

    /// <param name="options">The sweep's interval (<see cref="RabbitMqBackendOptions.PollInterval"/>).</param>
    /// <param name="connection">Gives the consumer channel.</param>
    /// <param name="topology">Declares a queue before it is consumed.</param>
    /// <param name="store">Says which buffered deliveries are stale.</param>
    /// <param name="ready">Called with a queue's name when a delivery of that queue arrived that may be work.</param>
    /// <param name="logger">Where a consumer the broker cancelled is reported.</param>
    public RabbitMqDeliveries(RabbitMqBackendOptions options, RabbitMqConnection connection, RabbitMqTopology topology, IConveyorBackend store, Action<string> ready,
        ILogger logger)
    {
        _logger = logger;
        _options = options;
        _connection = connection;
        _topology = topology;
        _store = store;
        _ready = ready;
    }

    /// <summary>Consumers being started, so that a deletion of the broker objects waits for them.</summary>
    public IEnumerable<Lazy<Task>> Pending => _consumers.Values;

    /// <summary>A new consumer channel: its deliveries start afresh, and every queue is consumed again on first use.</summary>
    public void OnConsumerChannelOpened()
    {
        Interlocked.Increment(ref _consumerChannelsOpened);
        _ledger.ChannelReplaced();
        _unsettled.Clear();
        _consumers.Clear();
    }

    /// <summary>Consumes <paramref name="queue"/>'s broker queue unless this channel does already. Consumers whose channel
    /// the broker closed while the connection lives (a channel error) are made again here, on a new channel: otherwise
    /// only a call that needs a channel would replace it (a worker with nothing to enqueue makes none), and the queue's
    /// messages would pile up in the broker without a consumer while the worker fetched from the store alone.</summary>
    public async Task EnsureConsumerAsync(string queue, CancellationToken cancellationToken)
    {
        StartSweeper();
        if (Volatile.Read(ref _consumingOn) is { IsOpen: false })
        {
            try
            {
                // Opens a consumer channel in place of the closed one (and forgets the consumers) when the connection is
                // up; while the broker is down, the reconnect does that, and the fetch goes on from the store.
                await _connection.GetAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (BackendUnavailableException)
            {
            }
        }
        await OnceTasks.RunAsync(_consumers, queue, async q =>
        {
            await _topology.DeclareQueueAsync(q, CancellationToken.None).ConfigureAwait(false);
            var (_, _, channel) = await _connection.GetAsync(CancellationToken.None).ConfigureAwait(false);
            // This consumer's entry, for its cancel to forget it and no other (one made since on a new channel).
            _consumers.TryGetValue(q, out var entry);
            var consumer = new BrokerCancellableConsumer(channel, () => OnCancelledByBroker(q, channel, entry));
            consumer.ReceivedAsync += (_, e) => OnDeliveryAsync(q, channel, e);
            // Before the consume: a cancel may come as soon as it is made.
            Volatile.Write(ref _consumingOn, channel);
            await channel.BasicConsumeAsync(_topology.BrokerQueue(q), autoAck: false, consumer).ConfigureAwait(false);
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The broker cancelled <paramref name="queue"/>'s consumer on a channel it left open: its queue was deleted (by an
    /// operator, a policy, a test's clean-up), or a cluster moved it. Nothing else would consume it again, since the
    /// queue reads as consumed here: the worker would fetch from the store alone, at its fallback poll, and other
    /// processes' publishes would have no queue to reach. The queue is forgotten, declared and consumed again at the next
    /// fetch, which the ready signal asks for now.
    /// </summary>
    private void OnCancelledByBroker(string queue, IChannel channel, Lazy<Task>? entry)
    {
        if (_stop.IsCancellationRequested || DeletingBrokerObjects || !ReferenceEquals(Volatile.Read(ref _consumingOn), channel))
        {
            return;
        }
        LogConsumerCancelled(_logger, _topology.BrokerQueue(queue));
        _topology.Forget(queue);
        if (entry is not null)
        {
            _consumers.TryRemove(new KeyValuePair<string, Lazy<Task>>(queue, entry));
        }
        _ready(queue);
    }

    /// <summary>Set, for good, once this backend starts deleting its broker objects (teardown): the cancels of its own
    /// consumers that the deletion brings, which reach the client after the deletion's answer, are expected, and nothing
    /// is declared or consumed again for them.</summary>
    public bool DeletingBrokerObjects { get; set; }

    [LoggerMessage(EventId = 5013, Level = LogLevel.Warning, Message = "RabbitMQ cancelled the consumer of {BrokerQueue} (the queue was deleted or moved); declaring and consuming it again")]
    private static partial void LogConsumerCancelled(ILogger logger, string brokerQueue);

    /// <summary>
    /// Sweeps every <see cref="RabbitMqBackendOptions.PollInterval"/>, and again at once while sweeps drop stale
    /// deliveries, whether or not anyone fetches: fetches no longer wait in the backend (a worker with nothing to do
    /// fetches only when notified, or every <c>FetchWait</c>), and a buffer full of stale deliveries — thousands after a
    /// worker's restart — would otherwise drain one buffer per fallback poll.
    /// </summary>
    private void StartSweeper()
    {
        if (_sweeper is not null)
        {
            return;
        }
        lock (_sweeperGate)
        {
            _sweeper ??= Task.Run(SweepLoopAsync);
        }
    }

    private async Task SweepLoopAsync()
    {
        var stop = _stop.Token;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(_options.PollInterval, stop).ConfigureAwait(false);
                do
                {
                    await DropStaleAsync(stop).ConfigureAwait(false);
                }
                while (Volatile.Read(ref _lastSweepDropped) && !stop.IsCancellationRequested);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // The store or the channel is unavailable: the next tick tries again (outages are logged by the fetches).
            }
        }
    }

    /// <summary>Stops the background sweep.</summary>
    public async ValueTask DisposeAsync()
    {
        // Not awaited: the store's call the sweep is in may be an Npgsql command, whose cancel callback waits for a
        // server that may not answer (up to its connection timeout). A callback's failure is observed there.
        _ = _stop.CancelAsync().ContinueWith(static t => _ = t.Exception, CancellationToken.None,
            TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        if (_sweeper is not null)
        {
            try
            {
                await _sweeper.WaitAsync(RabbitMqConnection.CloseWait).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                // The sweep ends by the store's own time limits; it is left running, with its token, to the process's end.
                return;
            }
        }
        _stop.Dispose();
        // _settling is not disposed: the consumer may still deliver (and ack) until the connection closes after this,
        // and a disposed semaphore would fail or strand those; it never made a wait handle, so it holds nothing to free.
    }

    private async Task OnDeliveryAsync(string queue, IChannel channel, BasicDeliverEventArgs e)
    {
        var delivery = new Delivery(channel, e.DeliveryTag);
        _unsettled.Add(channel, e.DeliveryTag);
        var text = Encoding.UTF8.GetString(e.Body.Span);
        if (!Guid.TryParse(text, out var id))
        {
            // A wake-up without a task (promotion, requeued leases): nothing to hold.
            await AckAsync([delivery]).ConfigureAwait(false);
            _ready(queue);
            return;
        }
        switch (_ledger.Receive(id, delivery))
        {
            case Arrival.Settled:
                // Its task already ran here: nothing to wake.
                await AckAsync([delivery]).ConfigureAwait(false);
                break;
            case Arrival.Buffered:
                _ready(queue);
                break;
            default:
                // Held for a task running here.
                break;
        }
    }

    /// <summary>How many deliveries are held for tasks leased here.</summary>
    internal int HeldCount => _ledger.HeldCount;

    /// <summary>How many acks went as one frame for a run of deliveries (tests count them).</summary>
    internal long MultipleAcks => Interlocked.Read(ref _multipleAcks);

    private long _multipleAcks;

    /// <summary>How many consumer channels were opened: one the broker closed (say, for an ack of an unknown or repeated
    /// tag) is replaced by the next call that needs the broker (tests check that none was).</summary>
    internal int ConsumerChannelsOpened => Volatile.Read(ref _consumerChannelsOpened);

    private int _consumerChannelsOpened;

    /// <summary>Holds the deliveries of tasks leased here until their attempt settles.</summary>
    public void Hold(IReadOnlyList<Lease> leases) => _ledger.Hold(leases);

    /// <summary>Settles the held deliveries of <paramref name="ids"/> (<paramref name="found"/>: the tasks that had one).</summary>
    public Task SettleHeldAsync(IEnumerable<Guid> ids, Settle how, out HashSet<Guid> found) =>
        SettleAsync(_ledger.TakeHeld(ids, out found), how);

    /// <summary>Acks the held deliveries of <paramref name="ids"/>.</summary>
    public Task AckHeldAsync(IEnumerable<Guid> ids) => SettleAsync(_ledger.TakeHeld(ids, out _), Settle.Ack);

    private Task AckAsync(List<Delivery> deliveries) => SettleAsync(deliveries, Settle.Ack);

    private async Task SettleAsync(List<Delivery> deliveries, Settle how)
    {
        if (deliveries.Count == 0)
        {
            return;
        }
        // One settlement at a time, each sent before the next is planned: a multiple ack covers exactly the deliveries
        // it was planned for (UnsettledTags).
        await _settling.WaitAsync().ConfigureAwait(false);
        try
        {
            if (how == Settle.Ack)
            {
                // Acks of a completion batch go as one frame where their tags run unbroken: a frame each cost the
                // worker a write, and the drain its pace.
                foreach (var (channel, tag, multiple) in _unsettled.PlanAcks(deliveries.Select(d => (d.Channel, d.Tag))))
                {
                    if (multiple)
                    {
                        Interlocked.Increment(ref _multipleAcks);
                    }
                    await SendAsync(channel, tag, how, multiple).ConfigureAwait(false);
                }
                return;
            }
            _unsettled.Remove(deliveries.Select(d => (d.Channel, d.Tag)));
            foreach (var (channel, tag) in deliveries)
            {
                await SendAsync(channel, tag, how, multiple: false).ConfigureAwait(false);
            }
        }
        finally
        {
            _settling.Release();
        }
    }

    private static async Task SendAsync(IChannel channel, ulong tag, Settle how, bool multiple)
    {
        if (!channel.IsOpen)
        {
            // The channel closed (or is recovering): the broker redelivers its unacked messages.
            return;
        }
        try
        {
            switch (how)
            {
                case Settle.Ack:
                    await channel.BasicAckAsync(tag, multiple).ConfigureAwait(false);
                    break;
                case Settle.Requeue:
                    await channel.BasicNackAsync(tag, multiple: false, requeue: true).ConfigureAwait(false);
                    break;
                default:
                    // The queue's x-dead-letter-exchange takes it.
                    await channel.BasicRejectAsync(tag, requeue: false).ConfigureAwait(false);
                    break;
            }
        }
        catch (Exception e) when (e is global::RabbitMQ.Client.Exceptions.AlreadyClosedException or ObjectDisposedException)
        {
            // The channel closed meanwhile: the broker redelivers; the store decides whether the row is still ready.
        }
    }

    /// <summary>Acks the buffered deliveries whose row is no longer ready (leased elsewhere, cancelled, finished).</summary>
    public async Task DropStaleAsync(CancellationToken cancellationToken)
    {
        // At most once per PollInterval (wall clock): a paused queue's deliveries wait in the buffer and
        // need not be looked up on every fetch. Right away again when the last sweep dropped some: stale
        // deliveries are coming in (tasks leased by another process), and a buffer full of them stops the consumer.
        var now = Environment.TickCount64;
        var last = Interlocked.Read(ref _lastSweep);
        if (last != long.MinValue && now - last < (long)_options.PollInterval.TotalMilliseconds && !Volatile.Read(ref _lastSweepDropped))
        {
            return;
        }
        Interlocked.Exchange(ref _lastSweep, now);
        var ids = _ledger.BufferedIds();
        if (ids.Length == 0)
        {
            Volatile.Write(ref _lastSweepDropped, false);
            return;
        }
        // One store lookup for the whole buffer: after a restart the queue can hold thousands of messages for tasks
        // another process already ran, and only this sweep drains them.
        var states = await _store.Store.GetStatesAsync(ids, cancellationToken).ConfigureAwait(false);
        var stale = ids.Where(id => !states.TryGetValue(id, out var state) || state != TaskState.Queued).ToList();
        Volatile.Write(ref _lastSweepDropped, stale.Count > 0);
        await AckAsync(_ledger.TakeBuffered(stale)).ConfigureAwait(false);
    }
}
