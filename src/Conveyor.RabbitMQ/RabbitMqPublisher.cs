using System.Text;
using Conveyor.Backends;
using Microsoft.Extensions.Logging;
using RabbitMQ.Client;

namespace Conveyor.RabbitMQ;

/// <summary>
/// Publishing to the broker with publisher confirms: ready tasks to their queues, wake-ups, dead-letter copies; and
/// the rule that a broker step following a store change never fails the call (<see cref="AfterStoreAsync"/>).
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA1001:Types that own disposable fields should be disposable",
    Justification = "The semaphore's wait handle is never asked for, so it holds nothing to free; confirms still in flight release it after the backend is gone.")]
internal sealed partial class RabbitMqPublisher
{
    private readonly RabbitMqConnection _connection;
    private readonly RabbitMqTopology _topology;
    private readonly ILogger _logger;
    // Stopwatch timestamp of the first publish failure of the current streak; 0 when publishes succeed.
    private long _publishFailingSince;
    // Permits for messages whose confirm is awaited in the background (PublishReadyUnconfirmedAsync): one taken per
    // message, given back at its confirm or failure.
    private readonly SemaphoreSlim _unconfirmed;
    private readonly int _maxUnconfirmed;
    private static readonly TimeSpan PermitWait = TimeSpan.FromSeconds(1);

    public RabbitMqPublisher(RabbitMqConnection connection, RabbitMqTopology topology, ILogger logger, int maxUnconfirmed)
    {
        if (maxUnconfirmed < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(maxUnconfirmed), maxUnconfirmed,
                "Conveyor:RabbitMq:MaxUnconfirmedPublishes (CONVEYOR_RABBITMQ__MAXUNCONFIRMEDPUBLISHES) must be at least 1.");
        }
        _connection = connection;
        _topology = topology;
        _logger = logger;
        _maxUnconfirmed = maxUnconfirmed;
        _unconfirmed = new SemaphoreSlim(maxUnconfirmed, maxUnconfirmed);
    }

    /// <summary>Publishes a persistent message per task to its queue and returns once each is handed to the channel;
    /// their confirms are awaited in the background (a failure is logged as <see cref="AfterStoreAsync"/> logs one), at
    /// most the configured number at once: past it, this waits for confirms, up to <see cref="PermitWait"/> a message,
    /// and then leaves the rest of the call's messages out (logged): the tasks are stored, a worker finds them by its
    /// fallback poll, and a broker that stopped confirming cannot hold a producer forever. Not cancelled by the caller,
    /// whose tasks are stored by now.</summary>
    public Task PublishReadyUnconfirmedAsync(IReadOnlyList<(string Queue, Guid Id, int Priority)> messages) =>
        PublishToQueuesAsync(messages, pending: null, CancellationToken.None);

    private async Task AwaitConfirmAsync(Task confirm)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            await confirm.ConfigureAwait(false);
            Succeeded(started);
        }
        catch (Exception e)
        {
            Failed("enqueue", e);
        }
        finally
        {
            _unconfirmed.Release();
        }
    }

    /// <summary>Waits until every message published by <see cref="PublishReadyUnconfirmedAsync"/> is confirmed or
    /// failed, or <paramref name="timeout"/> passes: before the connection closes, so that a process that enqueues and
    /// exits leaves its messages with the broker. True when none is left.</summary>
    public async Task<bool> FlushAsync(TimeSpan timeout)
    {
        var deadline = System.Diagnostics.Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * System.Diagnostics.Stopwatch.Frequency);
        var taken = 0;
        try
        {
            while (taken < _maxUnconfirmed)
            {
                var left = TimeSpan.FromSeconds((double)(deadline - System.Diagnostics.Stopwatch.GetTimestamp()) / System.Diagnostics.Stopwatch.Frequency);
                if (left <= TimeSpan.Zero || !await _unconfirmed.WaitAsync(left).ConfigureAwait(false))
                {
                    LogUnconfirmedAtClose(_logger, _maxUnconfirmed - taken, timeout);
                    return false;
                }
                taken++;
            }
            return true;
        }
        finally
        {
            if (taken > 0)
            {
                _unconfirmed.Release(taken);
            }
        }
    }

    /// <summary>Publishes a persistent message per task (body: its id; <see cref="Guid.Empty"/> for a wake-up without a
    /// task) to its queue, and returns once the broker confirmed every one.</summary>
    public async Task PublishReadyAsync(IEnumerable<(string Queue, Guid Id, int Priority)> messages, CancellationToken cancellationToken)
    {
        var pending = new List<Task>();
        await PublishToQueuesAsync(messages, pending, cancellationToken).ConfigureAwait(false);
        // Publisher confirms: each publish completes when the broker has taken the message (persisted to disk for a durable queue).
        await Task.WhenAll(pending).ConfigureAwait(false);
    }

    /// <summary>Hands a message per task to the confirming channel, declaring its queue first. With
    /// <paramref name="pending"/>, each confirm is added to it for the caller to await (<see cref="PublishReadyAsync"/>);
    /// without, each message first takes a permit and its confirm is awaited in the background
    /// (<see cref="PublishReadyUnconfirmedAsync"/>). A null list rather than a delegate or strategy object: a
    /// one-at-a-time enqueue comes through here once a task, and the choice should cost it nothing.</summary>
    private async Task PublishToQueuesAsync(IEnumerable<(string Queue, Guid Id, int Priority)> messages, List<Task>? pending, CancellationToken cancellationToken)
    {
        var (_, publisher, _) = await _connection.GetAsync(cancellationToken).ConfigureAwait(false);
        foreach (var (queue, id, priority) in messages)
        {
            await _topology.DeclareQueueAsync(queue, cancellationToken).ConfigureAwait(false);
            if (pending is not null)
            {
                // Guid.Empty: a wake-up without a task, sent with an empty body.
                pending.Add(Publish(publisher, _topology.Exchange, queue, id == Guid.Empty ? "" : id.ToString("D"), priority, cancellationToken));
                continue;
            }
            if (!await _unconfirmed.WaitAsync(PermitWait, CancellationToken.None).ConfigureAwait(false))
            {
                throw new TimeoutException(
                    $"{_maxUnconfirmed} messages published earlier are still awaiting the broker's confirm; this call's messages were left out");
            }
            Task confirm;
            try
            {
                // Not the caller's token: the call has returned by the time the confirm comes.
                confirm = Publish(publisher, _topology.Exchange, queue, id.ToString("D"), priority, CancellationToken.None);
            }
            catch
            {
                _unconfirmed.Release();
                throw;
            }
            _ = AwaitConfirmAsync(confirm);
        }
    }

    /// <summary>Publishes the ids of dead tasks whose delivery this process does not hold to the dead-letter exchange.</summary>
    public async Task PublishDeadCopiesAsync(IEnumerable<Guid> ids, CancellationToken cancellationToken)
    {
        var (_, publisher, _) = await _connection.GetAsync(cancellationToken).ConfigureAwait(false);
        var pending = new List<Task>();
        foreach (var id in ids)
        {
            pending.Add(Publish(publisher, _topology.DeadExchange, "", id.ToString("D"), 0, cancellationToken));
        }
        await Task.WhenAll(pending).ConfigureAwait(false);
    }

    private static Task Publish(IChannel channel, string exchange, string routingKey, string body, int priority, CancellationToken cancellationToken)
    {
        var properties = new BasicProperties
        {
            Persistent = true,
            Priority = (byte)Math.Clamp((priority - Priorities.Min) * 10 / (Priorities.Max - Priorities.Min + 1), 0, 9),
            MessageId = body.Length == 0 ? null : body,
        };
        return channel.BasicPublishAsync(exchange, routingKey, mandatory: false, properties, Encoding.UTF8.GetBytes(body), cancellationToken).AsTask();
    }

    /// <summary>
    /// Runs a broker step that follows a store change already made (publishing ready tasks, a wake-up, a dead-letter
    /// copy, a notification). The store is the authority and its row the outbox, so a broker failure here does not fail
    /// the call: a ready row without a message is found by the worker's fallback poll (<c>FetchWait</c>), as after a
    /// crash between the two steps. Failing the call instead would report an enqueue as refused although its tasks are
    /// stored and will run. Logged once per failing streak.
    /// </summary>
    /// <param name="step">The broker step.</param>
    /// <param name="operation">Named in the log.</param>
    /// <param name="cancellationToken">The caller's: a cancellation is not a broker failure.</param>
    /// <param name="confirmedLater">The step returns before the broker confirmed (its confirms end the streak, not it).</param>
    public async Task AfterStoreAsync(Func<Task> step, string operation, CancellationToken cancellationToken, bool confirmedLater = false)
    {
        // Logged once per streak of failures. Only a publish that began after the streak began ends it: one in flight
        // when the broker went away may still succeed after others failed, and must not make the next failure log again.
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            await step().ConfigureAwait(false);
            if (!confirmedLater)
            {
                Succeeded(started);
            }
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            Failed(operation, e);
        }
    }

    private void Succeeded(long started)
    {
        var failingSince = Interlocked.Read(ref _publishFailingSince);
        if (failingSince != 0 && started > failingSince)
        {
            Interlocked.CompareExchange(ref _publishFailingSince, 0, failingSince);
        }
    }

    /// <summary>Records a failed broker step after a store change: logged once per failing streak.</summary>
    public void Failed(string operation, Exception e)
    {
        if (Interlocked.CompareExchange(ref _publishFailingSince, System.Diagnostics.Stopwatch.GetTimestamp(), 0) == 0)
        {
            LogPublishFailed(_logger, operation, e.Message, e);
        }
    }

    [LoggerMessage(EventId = 5012, Level = LogLevel.Warning, Message = "{Count} messages published to RabbitMQ were not confirmed within {Timeout} of the close; their tasks are stored, and workers find them by their fallback poll if the broker lost them")]
    private static partial void LogUnconfirmedAtClose(ILogger logger, int count, TimeSpan timeout);

    [LoggerMessage(EventId = 5003, Level = LogLevel.Warning, Message = "Could not publish to RabbitMQ after {Operation} ({Reason}); the tasks are stored, and workers find them by their fallback poll until the broker is back")]
    private static partial void LogPublishFailed(ILogger logger, string operation, string reason, Exception exception);
}
