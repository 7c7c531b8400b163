using System.Text;
using Conveyor.Backends;
using Microsoft.Extensions.Logging;
using RabbitMQ.Client;

namespace Conveyor.RabbitMQ;

/// <summary>
/// Publishing to the broker with publisher confirms: ready tasks to their queues, wake-ups, dead-letter copies; and
/// the rule that a broker step following a store change never fails the call (<see cref="AfterStoreAsync"/>).
/// </summary>
internal sealed partial class RabbitMqPublisher
{
    private readonly RabbitMqConnection _connection;
    private readonly RabbitMqTopology _topology;
    private readonly ILogger _logger;
    // Stopwatch timestamp of the first publish failure of the current streak; 0 when publishes succeed.
    private long _publishFailingSince;

    public RabbitMqPublisher(RabbitMqConnection connection, RabbitMqTopology topology, ILogger logger)
    {
        _connection = connection;
        _topology = topology;
        _logger = logger;
    }

    /// <summary>Publishes a persistent message per task (body: its id; <see cref="Guid.Empty"/> for a wake-up without a
    /// task) to its queue, and returns once the broker confirmed every one.</summary>
    public async Task PublishReadyAsync(IEnumerable<(string Queue, Guid Id, int Priority)> messages, CancellationToken cancellationToken)
    {
        var (_, publisher, _) = await _connection.GetAsync(cancellationToken).ConfigureAwait(false);
        var pending = new List<Task>();
        foreach (var (queue, id, priority) in messages)
        {
            await _topology.DeclareQueueAsync(queue, cancellationToken).ConfigureAwait(false);
            pending.Add(Publish(publisher, _topology.Exchange, queue, id == Guid.Empty ? "" : id.ToString("D"), priority, cancellationToken));
        }
        // Publisher confirms: each publish completes when the broker has taken the message (persisted to disk for a durable queue).
        await Task.WhenAll(pending).ConfigureAwait(false);
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
    public async Task AfterStoreAsync(Func<Task> step, string operation, CancellationToken cancellationToken)
    {
        // Logged once per streak of failures. Only a publish that began after the streak began ends it: one in flight
        // when the broker went away may still succeed after others failed, and must not make the next failure log again.
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            await step().ConfigureAwait(false);
            var failingSince = Interlocked.Read(ref _publishFailingSince);
            if (failingSince != 0 && started > failingSince)
            {
                Interlocked.CompareExchange(ref _publishFailingSince, 0, failingSince);
            }
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            if (Interlocked.CompareExchange(ref _publishFailingSince, System.Diagnostics.Stopwatch.GetTimestamp(), 0) == 0)
            {
                LogPublishFailed(_logger, operation, e.Message, e);
            }
        }
    }

    [LoggerMessage(EventId = 5003, Level = LogLevel.Warning, Message = "Could not publish to RabbitMQ after {Operation} ({Reason}); the tasks are stored, and workers find them by their fallback poll until the broker is back")]
    private static partial void LogPublishFailed(ILogger logger, string operation, string reason, Exception exception);
}
