using Conveyor.Backends;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Conveyor.RabbitMQ;

/// <summary>
/// The queue role on a RabbitMQ broker, paired with a SQL store (any <see cref="IConveyorBackend"/>,
/// e.g. PostgreSQL or SQLite) that holds task state, results and coordination.
/// </summary>
/// <remarks>
/// The store is the authority for every task's state, so cancel, idempotency, lists, queue statistics,
/// lease fencing and lease expiry behave exactly as in the store's backend. The broker carries the
/// hand-off between processes: every message made ready (enqueue, release, manual retry) is published
/// persistently to a durable queue with publisher confirms (awaited before the call returns), and
/// consumers with a <c>basic.qos</c> prefetch push the deliveries into an in-process buffer; a delivery
/// there is this process's ready notification for its queue. A fetch never waits: it leases rows in the
/// store (the store picks priority, FIFO and queue order) and holds the deliveries of the rows it leased
/// unacked until their attempt settles; deliveries whose row is no longer ready (cancelled, or leased by
/// another process) are acked and dropped. Dead tasks are also published to a dead-letter exchange.
/// This class composes the parts, one job each: <see cref="RabbitMqConnection"/> (connection and reconnect),
/// <see cref="RabbitMqTopology"/> (exchanges and queues), <see cref="RabbitMqDeliveries"/> with its
/// <see cref="DeliveryLedger"/> (consumers, buffer, acks, sweep), <see cref="RabbitMqPublisher"/> (confirms)
/// and <see cref="RabbitMqNotifier"/>. See docs/rabbitmq.md for the trade-offs.
/// </remarks>
public sealed class RabbitMqBackend : IConveyorBackend, IQueueBackend, IAsyncDisposable
{
    private readonly IConveyorBackend _store;
    private readonly RabbitMqBackendOptions _options;
    private readonly RabbitMqConnection _connection;
    private readonly RabbitMqTopology _topology;
    private readonly RabbitMqDeliveries _deliveries;
    private readonly RabbitMqPublisher _publisher;
    // Workflow steps this process leased: a success of one may release steps in the store, which have no broker message,
    // so it is announced on the notifier. Empty unless workflows run, so plain completions pay one IsEmpty test.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<Guid, byte> _leasedSteps = new();
    private readonly RabbitMqNotifier _notifier;
    private bool _disposed;
    private static readonly TimeSpan FlushTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Creates the backend; it connects to the broker on first use.</summary>
    /// <param name="store">The SQL backend that holds state, results and coordination.</param>
    /// <param name="options">Broker settings.</param>
    /// <param name="time">The clock; the store should use the same one.</param>
    /// <param name="logger">Where the loss and the recovery of the broker connection are logged.</param>
    public RabbitMqBackend(IConveyorBackend store, RabbitMqBackendOptions options, TimeProvider? time = null, ILogger<RabbitMqBackend>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(options);
        _ = time; // Every time this backend compares is the store's: leases, ETAs and retries live there.
        _store = store;
        _options = options;
        Capabilities = new()
        {
            Reach = BackendReach.Network,
            CrossProcessNotifications = true,
            MaxNotificationPayload = RabbitMqNotifier.MaxPayload,
            // True also on quorum queues, which have no priorities in RabbitMQ 3.x: the store's fetch orders by priority,
            // and a delivery only says that its queue has work.
            Priorities = true,
            ShortFetchMeansEmpty = store.Capabilities.ShortFetchMeansEmpty,
        };
        var log = (ILogger?)logger ?? NullLogger.Instance;
        // The hooks run only once a call connects, after this constructor assigned the parts they name.
        _connection = new RabbitMqConnection(options, log)
        {
            ConnectionOpened = connection => _topology!.OnConnectionOpened(connection),
            PublisherOpened = (channel, cancellationToken) => _topology!.DeclareExchangesAsync(channel, cancellationToken),
            ConsumerOpened = () => _deliveries!.OnConsumerChannelOpened(),
            ConnectionReplaced = () => _notifier!.OnConnectionReplacedAsync(),
        };
        _topology = new RabbitMqTopology(options, _connection, log);
        _notifier = new RabbitMqNotifier(_connection, _topology);
        _deliveries = new RabbitMqDeliveries(options, _connection, _topology, store,
            queue => _notifier.Hub.Deliver(new Notification(NotifierChannels.Ready, queue)), log);
        _publisher = new RabbitMqPublisher(_connection, _topology, log, options.MaxUnconfirmedPublishes);
    }

    /// <inheritdoc />
    public string Name => "rabbitmq";

    /// <inheritdoc />
    public IQueueBackend Queue => this;

    /// <inheritdoc />
    public ITaskStore Store => _store.Store;

    /// <inheritdoc />
    public ICoordinationBackend Coordination => _store.Coordination;

    /// <inheritdoc />
    public IScheduleStore Schedules => _store.Schedules;

    /// <inheritdoc />
    public IUniqueKeyStore UniqueKeys => _store.UniqueKeys;

    /// <inheritdoc />
    /// <remarks>The store's: API keys are kept in the paired SQL backend.</remarks>
    public IApiKeyStore? ApiKeys => _store.ApiKeys;

    /// <inheritdoc />
    /// <remarks>Payloads live in the SQL store only (broker messages carry task ids).</remarks>
    public IPayloadStore? Payloads => _store.Payloads;

    /// <inheritdoc />
    public IAuditLog? Audit => _store.Audit;

    /// <inheritdoc />
    /// <remarks>The store's: users are kept in the paired SQL backend.</remarks>
    public IUserStore? Users => _store.Users;

    /// <inheritdoc />
    /// <remarks>The store's, with the first steps announced to the workers on this backend's notifier (the store keeps
    /// them; no broker message is published for a step); so is a success of a step this process leased, which may have
    /// released others. A step leased by a process that died before completing it is found by the workers' fallback
    /// poll (<c>Worker:FetchWait</c>, 5 s) when it is released by another process's completion.</remarks>
    public IWorkflowStore? Workflows => _store.Workflows is { } workflows ? new RabbitMqWorkflows(workflows, this) : null;

    /// <inheritdoc />
    public INotifier Notifier => _notifier;

    /// <inheritdoc />
    /// <remarks>The store's: limit counters are coordination state, kept in the paired SQL backend.</remarks>
    public ILimitStore Limits => _store.Limits;

    /// <inheritdoc />
    /// <remarks><see cref="BackendCapabilities.ShortFetchMeansEmpty"/> is the store's: leases are taken from it.</remarks>
    public BackendCapabilities Capabilities { get; }

    /// <summary>The prefix of this backend's exchanges and queues (<see cref="RabbitMqBackendOptions.Prefix"/>).</summary>
    public string Prefix => _options.Prefix;

    /// <summary>The paired SQL backend.</summary>
    public IConveyorBackend StoreBackend => _store;

    /// <summary>The name of the broker queue that carries a Conveyor queue: <c>{prefix}.q.{queue}</c>.</summary>
    public string BrokerQueueName(string queue) => _topology.BrokerQueue(queue);

    /// <summary>The name of the dead-letter exchange and of the queue bound to it: <c>{prefix}.dead</c>.</summary>
    public string DeadLetterName => _topology.DeadExchange;

    /// <summary>Whether the queues of this connection are quorum queues.</summary>
    internal bool QuorumQueues => _topology.Quorum;

    /// <summary>How many deliveries this process holds for tasks leased here (tests wait on it).</summary>
    internal int HeldDeliveries => _deliveries.HeldCount;

    /// <summary>How many acks this process sent as one frame for a run of deliveries (tests count them).</summary>
    internal long MultipleAcks => _deliveries.MultipleAcks;

    /// <summary>How many consumer channels this instance opened (tests check that the broker closed none).</summary>
    internal int ConsumerChannelsOpened => _deliveries.ConsumerChannelsOpened;

    /// <summary>The consumer channel now open, if any (tests close it with a channel error).</summary>
    internal global::RabbitMQ.Client.IChannel? CurrentConsumerChannel => _connection.CurrentConsumer;

    /// <summary>
    /// One round trip on the consumer channel as it is (its prefetch set again), never on a new one: the broker handles a
    /// channel's frames in order, so once it answers, every ack sent before on that channel was accepted; an unknown or
    /// repeated tag would have closed the channel, and this throws. Accepted is not yet applied by the queue: a classic
    /// queue has each ack before the channel can close, but a RabbitMQ 3.x quorum queue may not (the channel forwards
    /// settlements to the queue's Raft log and, past 32 not yet applied, keeps the rest until earlier ones are; a close
    /// meanwhile drops them, and their messages come back): tests that count what comes back after a close use classic
    /// queues (see docs/rabbitmq.md).
    /// </summary>
    internal async Task ConsumerChannelRoundTripAsync(CancellationToken cancellationToken)
    {
        var channel = _connection.CurrentConsumer ?? throw new InvalidOperationException("No consumer channel was opened.");
        await channel.BasicQosAsync(0, _options.Prefetch, false, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task MigrateAsync(CancellationToken cancellationToken)
    {
        // The store's schema and the broker's connection at once: neither needs the other, and each is mostly start-up
        // work (the broker's handshake and topology, the store's open and version check) that the first fetch waits for.
        await Task.WhenAll(_store.MigrateAsync(cancellationToken), _connection.GetAsync(cancellationToken)).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<BackendHealth> CheckHealthAsync(CancellationToken cancellationToken)
    {
        var store = await _store.CheckHealthAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var (connection, _, _) = await _connection.GetAsync(cancellationToken).ConfigureAwait(false);
            if (!connection.IsOpen)
            {
                return new BackendHealth(false, "rabbitmq: the broker connection is closed; " + store.Description, store.Warnings);
            }
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return new BackendHealth(false, "rabbitmq: " + e.Message + "; " + store.Description, store.Warnings);
        }
        return store with { Description = "rabbitmq broker answered; store: " + store.Description };
    }

    /// <inheritdoc />
    /// <remarks>The broker: unreachable, its connection closed, or reconnecting (<see cref="BackendUnavailableException"/>);
    /// anything else is asked of the store.</remarks>
    public string? GetUnavailableBackend(Exception exception) => exception switch
    {
        BackendUnavailableException e => e.Backend,
        global::RabbitMQ.Client.Exceptions.BrokerUnreachableException or global::RabbitMQ.Client.Exceptions.AlreadyClosedException
            or global::RabbitMQ.Client.Exceptions.ConnectFailureException => Name,
        _ => _store.GetUnavailableBackend(exception),
    };

    /// <inheritdoc />
    public async Task<IReadOnlyList<EnqueueResult>> EnqueueAsync(IReadOnlyList<TaskMessage> messages, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var results = await _store.Queue.EnqueueAsync(messages, cancellationToken).ConfigureAwait(false);
        var ready = new List<(string, Guid, int)>();
        for (var i = 0; i < results.Count; i++)
        {
            if (results[i] is { Created: true, State: TaskState.Queued })
            {
                ready.Add((messages[i].Queue, messages[i].Id, messages[i].Priority));
            }
        }
        if (ready.Count > 0)
        {
            // The store holds the tasks now: unless told otherwise, the call does not also wait for the broker's disk.
            if (_options.EnqueueWaitsForConfirms)
            {
                await _publisher.AfterStoreAsync(() => _publisher.PublishReadyAsync(ready, cancellationToken), "enqueue", cancellationToken).ConfigureAwait(false);
            }
            else
            {
                await _publisher.AfterStoreAsync(() => _publisher.PublishReadyUnconfirmedAsync(ready), "enqueue", cancellationToken, confirmedLater: true).ConfigureAwait(false);
            }
        }
        return results;
    }

    /// <inheritdoc />
    /// <remarks>Never waits: the worker waits on the notifier, which a delivery in this process's buffer wakes.</remarks>
    public async Task<IReadOnlyList<Lease>> FetchAsync(FetchRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        foreach (var queue in request.Queues)
        {
            await _deliveries.EnsureConsumerAsync(queue.Name, cancellationToken).ConfigureAwait(false);
        }
        cancellationToken.ThrowIfCancellationRequested();
        var leases = await _store.Queue.FetchAsync(request, cancellationToken).ConfigureAwait(false);
        _deliveries.Hold(leases);
        foreach (var lease in leases)
        {
            if (lease.Message.Headers is { } headers && headers.ContainsKey(Conveyor.Workflows.WorkflowHeaders.Workflow))
            {
                _leasedSteps.TryAdd(lease.Message.Id, 0);
            }
        }
        if (leases.Count < request.MaxCount)
        {
            await _deliveries.DropStaleAsync(cancellationToken).ConfigureAwait(false);
        }
        return leases;
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<CompletionOverride>> CompleteAsync(IReadOnlyList<Completion> completions, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(completions);
        // The store's answer is ours: the broker only settles the deliveries.
        var overrides = await _store.Queue.CompleteAsync(completions, cancellationToken).ConfigureAwait(false);
        if (!_leasedSteps.IsEmpty)
        {
            var released = false;
            foreach (var completion in completions)
            {
                // A success releases the steps after it; a failure may release the workflow's error step.
                released |= _leasedSteps.TryRemove(completion.Lease.TaskId, out _) && completion.Kind != CompletionKind.Retry;
            }
            if (released)
            {
                // The store released the steps that run after these, or an error step (in its transaction); which queues,
                // it does not say.
                await NotifyReadyAsync([""], cancellationToken).ConfigureAwait(false);
            }
        }
        // The store has the outcomes: settle the deliveries. A dead task's delivery is rejected to the
        // dead-letter exchange; the others are acked (a retry waits in the store and is published when due).
        var askedDead = completions.Where(c => c.Kind == CompletionKind.Dead).Select(c => c.Lease.TaskId).ToList();
        var states = askedDead.Count == 0
            ? null
            : await _store.Store.GetStatesAsync(askedDead, cancellationToken).ConfigureAwait(false);
        var dead = askedDead.Where(id => states!.TryGetValue(id, out var state) && state == TaskState.Dead).ToList();
        var deadSet = dead.ToHashSet();
        await _deliveries.AckHeldAsync(completions.Select(c => c.Lease.TaskId).Where(id => !deadSet.Contains(id))).ConfigureAwait(false);
        await DeadLetterAsync(dead, cancellationToken).ConfigureAwait(false);
        return overrides;
    }

    /// <summary>Dead-letters the tasks the store has dead: a held delivery is rejected to the dead-letter exchange, and a
    /// copy is published for each of the others.</summary>
    private async Task DeadLetterAsync(List<Guid> dead, CancellationToken cancellationToken)
    {
        if (dead.Count == 0)
        {
            return;
        }
        await _deliveries.SettleHeldAsync(dead, Settle.DeadLetter, out var rejected).ConfigureAwait(false);
        var unheld = dead.Where(id => !rejected.Contains(id)).ToList();
        if (unheld.Count == 0)
        {
            return;
        }
        // No delivery held here (it was consumed by another process, or its channel closed): publish the record.
        // Without a broker the dead-letter queue misses it; the store has the task dead.
        await _publisher.AfterStoreAsync(() => _publisher.PublishDeadCopiesAsync(unheld, cancellationToken), "a dead-letter copy", cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<LeaseExtension> ExtendLeasesAsync(IReadOnlyList<LeaseRef> leases, TimeSpan duration, CancellationToken cancellationToken)
    {
        var extension = await _store.Queue.ExtendLeasesAsync(leases, duration, cancellationToken).ConfigureAwait(false);
        if (extension.Lost.Count > 0)
        {
            // The store gave these leases up: their deliveries have nothing left to guard.
            await _deliveries.AckHeldAsync(extension.Lost.Select(l => l.TaskId)).ConfigureAwait(false);
        }
        return extension;
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<LeaseRef>> StartAsync(IReadOnlyList<LeaseRef> leases, CancellationToken cancellationToken) =>
        _store.Queue.StartAsync(leases, cancellationToken);

    /// <inheritdoc />
    public async Task<LeaseSweep> ReleaseAsync(IReadOnlyList<LeaseRef> leases, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(leases);
        if (leases.Count == 0)
        {
            return LeaseSweep.None;
        }
        var sweep = await _store.Queue.ReleaseAsync(leases, cancellationToken).ConfigureAwait(false);
        // A lease whose handler started ends as an interrupted attempt (LeaseRules): the last one leaves its task dead,
        // and a cancel asked leaves it cancelled. Those deliveries are settled as a completion's are: dead-lettered, or
        // acked. The others go back to their queue (basic.nack with requeue), or are published again when not held here.
        var ids = leases.Select(l => l.TaskId).Distinct().ToList();
        var states = await _store.Store.GetStatesAsync(ids, cancellationToken).ConfigureAwait(false);
        var dead = ids.Where(id => states.TryGetValue(id, out var state) && state == TaskState.Dead).ToList();
        await DeadLetterAsync(dead, cancellationToken).ConfigureAwait(false);
        var finished = ids.Where(id => states.TryGetValue(id, out var state) && state.IsTerminal() && state != TaskState.Dead).ToHashSet();
        await _deliveries.AckHeldAsync(finished).ConfigureAwait(false);
        var rest = ids.Where(id => !finished.Contains(id) && !dead.Contains(id)).ToList();
        await _deliveries.SettleHeldAsync(rest, Settle.Requeue, out var requeued).ConfigureAwait(false);
        var queues = await PublishReadyAsync(rest.Where(id => !requeued.Contains(id)), cancellationToken).ConfigureAwait(false);
        // A requeued delivery may go back to this process's own consumer: every process hears of the work. The queues of
        // requeued deliveries are not looked up (one store read each); an empty payload means any queue.
        await NotifyReadyAsync(requeued.Count > 0 ? queues.Append("") : queues, cancellationToken).ConfigureAwait(false);
        return sweep;
    }

    /// <summary>Publishes the tasks of <paramref name="ids"/> that the store has queued; returns their queues.</summary>
    private async Task<IReadOnlyCollection<string>> PublishReadyAsync(IEnumerable<Guid> ids, CancellationToken cancellationToken)
    {
        var ready = new List<(string Queue, Guid, int)>();
        foreach (var id in ids)
        {
            var record = await _store.Store.GetAsync(id, cancellationToken).ConfigureAwait(false);
            if (record is { State: TaskState.Queued })
            {
                ready.Add((record.Queue, record.Id, record.Priority));
            }
        }
        if (ready.Count > 0)
        {
            await _publisher.AfterStoreAsync(() => _publisher.PublishReadyAsync(ready, cancellationToken), "release or retry", cancellationToken).ConfigureAwait(false);
        }
        return ready.Select(r => r.Queue).ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>
    /// Tells every process that <paramref name="queues"/> have work, on the notifier. A broker message reaches one
    /// consumer (which may be this process's own, or a busy one), so outside the enqueue path — release, manual retry,
    /// promotion, reaped leases, resume — the work is also announced to all. Enqueue relies on its deliveries alone:
    /// one per task, spread over the consumers.
    /// </summary>
    internal Task AnnounceReadyAsync(IEnumerable<string> queues, CancellationToken cancellationToken) => NotifyReadyAsync(queues, cancellationToken);

    private async Task NotifyReadyAsync(IEnumerable<string> queues, CancellationToken cancellationToken)
    {
        foreach (var queue in queues.Distinct(StringComparer.Ordinal))
        {
            await _publisher.AfterStoreAsync(() => _notifier.PublishAsync(NotifierChannels.Ready, queue, cancellationToken).AsTask(),
                "a ready notification", cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public async Task<LeaseSweep> RequeueExpiredLeasesAsync(CancellationToken cancellationToken)
    {
        // Woken in the background, as a hand-back is (below): the reaper's next sweep does not wait on a silent broker.
        var sweep = await _store.Queue.RequeueExpiredLeasesAsync(cancellationToken).ConfigureAwait(false);
        if (sweep.Count > 0)
        {
            WakeInBackground();
        }
        return sweep;
    }

    /// <inheritdoc />
    public async Task<LeaseSweep> AbandonLeasesAsync(string workerId, CancellationToken cancellationToken)
    {
        // The gone worker's deliveries went back to the broker with its connection; the rows made ready are woken as the
        // reaper's are, in the background, not under the caller's token: its callers (a stopping worker, a hand-back) wait for the call
        // with that token, so a broker that does not answer made a hand-back that had ended in the store read as failed
        // ("Could not hand back the leases"), and held the stop to its deadline for a hint.
        var sweep = await _store.Queue.AbandonLeasesAsync(workerId, cancellationToken).ConfigureAwait(false);
        if (sweep.Count > 0)
        {
            WakeInBackground();
        }
        return sweep;
    }

    /// <summary>The background wake-up under way, or the last one: a dispose waits for it, up to <see cref="WakeDisposeWait"/>.</summary>
    private Task _backgroundWake = Task.CompletedTask;

    /// <summary>0: no background wake-up runs; 1: one runs; 2: one runs and another was asked for meanwhile.</summary>
    private int _wakeState;

    /// <summary>Longest a background wake-up takes (a store read and a confirmed publish).</summary>
    private static readonly TimeSpan WakeTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Longest a dispose waits for the background wake-up under way: a broker that does not answer would hold it
    /// to <see cref="WakeTimeout"/>.</summary>
    private static readonly TimeSpan WakeDisposeWait = TimeSpan.FromSeconds(1);

    /// <summary>Wakes the queues with ready work after the call that asked has returned. One wake-up at a time: one asked
    /// for while another runs makes that one run again when it ends (reading the queues afresh), so that a promoter
    /// called many times a second, or a broker that does not confirm, cannot stack them up.</summary>
    private void WakeInBackground()
    {
        while (!Volatile.Read(ref _disposed))
        {
            switch (Volatile.Read(ref _wakeState))
            {
                case 0 when Interlocked.CompareExchange(ref _wakeState, 1, 0) == 0:
                    _backgroundWake = Task.Run(RunBackgroundWakesAsync);
                    return;
                case 1 when Interlocked.CompareExchange(ref _wakeState, 2, 1) == 1:
                case 2:
                    return;
                default:
                    // The state changed between the read and the exchange: read it again.
                    break;
            }
        }
    }

    private async Task RunBackgroundWakesAsync()
    {
        while (true)
        {
            if (!Volatile.Read(ref _disposed))
            {
                await WakeOnceAsync().ConfigureAwait(false);
            }
            if (Interlocked.CompareExchange(ref _wakeState, 0, 1) == 1)
            {
                return;
            }
            // Asked for again while it ran.
            Volatile.Write(ref _wakeState, 1);
        }
    }

    /// <summary>Background wake-ups running now (for tests: at most one).</summary>
    internal int BackgroundWakesRunning => Volatile.Read(ref _wakesRunning);

    private int _wakesRunning;

    private async Task WakeOnceAsync()
    {
        using var bound = new CancellationTokenSource(WakeTimeout);
        Interlocked.Increment(ref _wakesRunning);
        try
        {
            await WakeQueuesAsync(bound.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException e) when (bound.IsCancellationRequested)
        {
            // The bound, not a caller, ended it: a broker that takes publishes and never confirms them. Logged as a failed
            // publish is (once a streak); workers find the tasks at their fallback poll.
            _publisher.Failed("a wake-up", e);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // A failed publish is logged by the publisher (once a streak); whatever failed, workers find the tasks at
            // their fallback poll.
        }
        finally
        {
            Interlocked.Decrement(ref _wakesRunning);
        }
    }

    /// <inheritdoc />
    public async Task<int> PromoteDueAsync(CancellationToken cancellationToken)
    {
        // Woken in the background: under the scheduler's token, a broker that took the publish and never confirmed it held
        // the promotion of every later due task (and the call's count) until the connection's heartbeat gave up on it.
        var count = await _store.Queue.PromoteDueAsync(cancellationToken).ConfigureAwait(false);
        if (count > 0)
        {
            WakeInBackground();
        }
        return count;
    }

    /// <summary>Publishes a wake-up (a message without a task) to every queue with ready work.</summary>
    private async Task WakeQueuesAsync(CancellationToken cancellationToken)
    {
        // Only the queued counts matter here: the finished ones are read no further than one row.
        var queues = (await _store.Store.GetQueuesAsync(finishedCountLimit: 1, cancellationToken).ConfigureAwait(false))
            .Where(q => q.Count(TaskState.Queued) > 0).Select(q => q.Name).ToList();
        await _publisher.AfterStoreAsync(
            () => _publisher.PublishReadyAsync(queues.Select(q => (q, Guid.Empty, 0)), cancellationToken),
            "a wake-up", cancellationToken).ConfigureAwait(false);
        await NotifyReadyAsync(queues, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public Task<DateTimeOffset?> NextDueAsync(CancellationToken cancellationToken) => _store.Queue.NextDueAsync(cancellationToken);

    /// <inheritdoc />
    public Task<CancelOutcome> CancelAsync(Guid taskId, CancellationToken cancellationToken) => _store.Queue.CancelAsync(taskId, cancellationToken);

    /// <inheritdoc />
    public async Task<RetryOutcome> RetryAsync(Guid taskId, CancellationToken cancellationToken)
    {
        var outcome = await _store.Queue.RetryAsync(taskId, cancellationToken).ConfigureAwait(false);
        if (outcome == RetryOutcome.Requeued)
        {
            await NotifyReadyAsync(await PublishReadyAsync([taskId], cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);
        }
        return outcome;
    }

    /// <inheritdoc />
    public Task PauseQueueAsync(string queue, CancellationToken cancellationToken) => _store.Queue.PauseQueueAsync(queue, cancellationToken);

    /// <inheritdoc />
    public async Task ResumeQueueAsync(string queue, CancellationToken cancellationToken)
    {
        await _store.Queue.ResumeQueueAsync(queue, cancellationToken).ConfigureAwait(false);
        // The paused queue's deliveries wait in some process's buffer and no new one comes: say so to every process.
        await NotifyReadyAsync([queue], cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Deletes the exchanges and queues of this backend's prefix that it declared (for tests and teardown).</summary>
    public Task DeleteBrokerObjectsAsync(CancellationToken cancellationToken) => DeleteBrokerObjectsAsync([], cancellationToken);

    /// <summary>Deletes the exchanges of this backend's prefix and the broker queues of <paramref name="queues"/> and of
    /// those it declared: what other instances (processes) on the prefix declared too, since the broker cannot list
    /// queues by prefix (for tests and teardown).</summary>
    public async Task DeleteBrokerObjectsAsync(IEnumerable<string> queues, CancellationToken cancellationToken)
    {
        // Let declarations and consumers under way finish first, so that none re-creates what is deleted; and the
        // consumers the deletion cancels are not made again.
        _deliveries.DeletingBrokerObjects = true;
        await OnceTasks.SettleAllAsync(_topology.Pending.Concat(_deliveries.Pending), cancellationToken).ConfigureAwait(false);
        var (_, publisher, _) = await _connection.GetAsync(cancellationToken).ConfigureAwait(false);
        await _topology.DeleteAsync(publisher, queues, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }
        Volatile.Write(ref _disposed, true);
        // Enqueued messages still on their way to the broker get there before the connection closes, and the background
        // wake-up after a promotion, a sweep or a hand-back (bounded itself; none starts from now on).
        await _backgroundWake.WaitAsync(WakeDisposeWait).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        await _publisher.FlushAsync(FlushTimeout).ConfigureAwait(false);
        await _deliveries.DisposeAsync().ConfigureAwait(false);
        await _notifier.DisposeAsync().ConfigureAwait(false);
        await _connection.DisposeAsync().ConfigureAwait(false);
        if (_options.OwnsStore)
        {
            switch (_store)
            {
                case IAsyncDisposable asyncDisposable:
                    await asyncDisposable.DisposeAsync().ConfigureAwait(false);
                    break;
                case IDisposable disposable:
                    disposable.Dispose();
                    break;
            }
        }
    }
}

/// <summary>The store's workflows, with the queues of the first steps announced on the RabbitMQ notifier.</summary>
internal sealed class RabbitMqWorkflows(IWorkflowStore store, RabbitMqBackend backend) : IWorkflowStore
{
    public async Task CreateWorkflowAsync(NewWorkflow workflow, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(workflow);
        await store.CreateWorkflowAsync(workflow, cancellationToken).ConfigureAwait(false);
        await backend.AnnounceReadyAsync(workflow.Steps.Where(s => s.After.Count == 0 && !s.IsErrorStep).Select(s => s.Message.Queue), cancellationToken).ConfigureAwait(false);
    }

    public Task<StoredWorkflow?> GetWorkflowAsync(Guid workflowId, CancellationToken cancellationToken) => store.GetWorkflowAsync(workflowId, cancellationToken);

    /// <inheritdoc />
    public Task<WorkflowSummary?> GetWorkflowSummaryAsync(Guid workflowId, CancellationToken cancellationToken) => store.GetWorkflowSummaryAsync(workflowId, cancellationToken);

    public Task<IReadOnlyList<TaskRecord>> GetWorkflowTasksAsync(Guid workflowId, CancellationToken cancellationToken) =>
        store.GetWorkflowTasksAsync(workflowId, cancellationToken);

    public Task<WorkflowPage> ListWorkflowsAsync(WorkflowQuery query, CancellationToken cancellationToken) => store.ListWorkflowsAsync(query, cancellationToken);

    public Task<bool> CancelWorkflowAsync(Guid workflowId, CancellationToken cancellationToken) => store.CancelWorkflowAsync(workflowId, cancellationToken);

    public async Task<bool> RetryWorkflowAsync(Guid workflowId, CancellationToken cancellationToken)
    {
        if (!await store.RetryWorkflowAsync(workflowId, cancellationToken).ConfigureAwait(false))
        {
            return false;
        }
        // Its steps queued again are in the store, which has no broker message for them: announced, for any queue.
        await backend.AnnounceReadyAsync([""], cancellationToken).ConfigureAwait(false);
        return true;
    }

    public Task<int> PurgeFinishedWorkflowsAsync(DateTimeOffset finishedBefore, int maxCount, CancellationToken cancellationToken) =>
        store.PurgeFinishedWorkflowsAsync(finishedBefore, maxCount, cancellationToken);
}
