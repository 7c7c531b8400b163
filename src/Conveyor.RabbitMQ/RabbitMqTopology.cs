using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using RabbitMQ.Client;

namespace Conveyor.RabbitMQ;

/// <summary>
/// The broker objects of one prefix: their names, their declaration (exchanges when a publisher channel opens, a
/// Conveyor queue's broker queue on first use, quorum or classic by <see cref="RabbitMqBackendOptions.QueueType"/> and
/// the broker's version) and their deletion.
/// </summary>
internal sealed partial class RabbitMqTopology
{
    private readonly RabbitMqBackendOptions _options;
    private readonly ILogger _logger;
    private readonly RabbitMqConnection _connection;
    private readonly ConcurrentDictionary<string, Lazy<Task>> _declared = new(StringComparer.Ordinal);
    // Every broker queue declared since the start (_declared forgets them at a reconnect), for DeleteAsync.
    private readonly ConcurrentDictionary<string, bool> _declaredNames = new(StringComparer.Ordinal);
    private volatile bool _quorum;

    public RabbitMqTopology(RabbitMqBackendOptions options, RabbitMqConnection connection, ILogger logger)
    {
        _options = options;
        _connection = connection;
        _logger = logger;
    }

    /// <summary>The direct exchange that routes a message to its Conveyor queue's broker queue: <c>{prefix}</c>.</summary>
    public string Exchange => _options.Prefix;

    /// <summary>The dead-letter exchange and the queue bound to it: <c>{prefix}.dead</c>.</summary>
    public string DeadExchange => _options.Prefix + ".dead";

    /// <summary>The fanout exchange of the notifier: <c>{prefix}.notify</c>.</summary>
    public string NotifyExchange => _options.Prefix + ".notify";

    /// <summary>The broker queue of a Conveyor queue: <c>{prefix}.q.{queue}</c>.</summary>
    public string BrokerQueue(string queue) => _options.Prefix + ".q." + queue;

    /// <summary>Whether the queues of the current connection are quorum queues (<see cref="UsesQuorumQueues"/>).</summary>
    public bool Quorum => _quorum;

    /// <summary>The broker says <paramref name="queue"/>'s broker queue is gone (deleted): it is declared again on next use.</summary>
    public void Forget(string queue) => _declared.TryRemove(queue, out _);

    /// <summary>A new connection: its broker may have lost the queues, so they are declared again on first use.</summary>
    public void OnConnectionOpened(IConnection connection)
    {
        _quorum = UsesQuorumQueues(_options.QueueType, connection.ServerProperties);
        _declared.Clear();
    }

    /// <summary>Declares the exchanges and the dead-letter queue on a new publisher channel.</summary>
    public async Task DeclareExchangesAsync(IChannel publisher, CancellationToken cancellationToken)
    {
        await publisher.ExchangeDeclareAsync(Exchange, ExchangeType.Direct, durable: true, autoDelete: false,
            cancellationToken: cancellationToken).ConfigureAwait(false);
        await publisher.ExchangeDeclareAsync(DeadExchange, ExchangeType.Fanout, durable: true, autoDelete: false,
            cancellationToken: cancellationToken).ConfigureAwait(false);
        await publisher.QueueDeclareAsync(DeadExchange, durable: true, exclusive: false, autoDelete: false,
            arguments: null, cancellationToken: cancellationToken).ConfigureAwait(false);
        await publisher.QueueBindAsync(DeadExchange, DeadExchange, "", cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Declares the notifier's exchange. Durable, so that it outlives a broker restart and a publish never
    /// meets a missing exchange (which would close the channel).</summary>
    public Task DeclareNotifyExchangeAsync(IChannel channel, CancellationToken cancellationToken) =>
        channel.ExchangeDeclareAsync(NotifyExchange, ExchangeType.Fanout, durable: true, autoDelete: false, cancellationToken: cancellationToken);

    /// <summary>Declares the durable queue of a Conveyor queue (quorum, or classic with priorities), bound to the
    /// exchange by its name; once per connection.</summary>
    public Task DeclareQueueAsync(string queue, CancellationToken cancellationToken) =>
        OnceTasks.RunAsync(_declared, queue, DeclareQueueNowAsync, cancellationToken);

    private async Task DeclareQueueNowAsync(string queue)
    {
        _declaredNames.TryAdd(queue, true);
        var (connection, publisher, _) = await _connection.GetAsync(CancellationToken.None).ConfigureAwait(false);
        if (_quorum && _options.QueueType == RabbitMqQueueType.Auto)
        {
            // A queue declared before (classic, by an earlier version or by QueueType Classic) keeps its type: a
            // declaration with other arguments fails with PRECONDITION_FAILED and closes its channel, so the quorum
            // declaration is tried on a channel of its own, not on the shared publisher.
            await using var probe = await connection.CreateChannelAsync().ConfigureAwait(false);
            try
            {
                await probe.QueueDeclareAsync(BrokerQueue(queue), durable: true, exclusive: false, autoDelete: false, QueueArguments(quorum: true)).ConfigureAwait(false);
            }
            catch (global::RabbitMQ.Client.Exceptions.OperationInterruptedException e) when (e.ShutdownReason?.ReplyCode == 406)
            {
                LogExistingClassicQueue(_logger, BrokerQueue(queue));
                await publisher.QueueDeclareAsync(BrokerQueue(queue), durable: true, exclusive: false, autoDelete: false, QueueArguments(quorum: false)).ConfigureAwait(false);
            }
        }
        else
        {
            await publisher.QueueDeclareAsync(BrokerQueue(queue), durable: true, exclusive: false, autoDelete: false, QueueArguments(_quorum)).ConfigureAwait(false);
        }
        await publisher.QueueBindAsync(BrokerQueue(queue), Exchange, queue).ConfigureAwait(false);
    }

    private Dictionary<string, object?> QueueArguments(bool quorum)
    {
        var arguments = new Dictionary<string, object?> { ["x-dead-letter-exchange"] = DeadExchange };
        if (quorum)
        {
            arguments["x-queue-type"] = "quorum";
        }
        else
        {
            arguments["x-max-priority"] = 10;
        }
        return arguments;
    }

    /// <summary>Declarations under way, so that a deletion waits for them rather than race them.</summary>
    public IEnumerable<Lazy<Task>> Pending => _declared.Values;

    /// <summary>Deletes the broker queues of <paramref name="queues"/> and of those this instance declared, the
    /// dead-letter queue and the exchanges.</summary>
    public async Task DeleteAsync(IChannel publisher, IEnumerable<string> queues, CancellationToken cancellationToken)
    {
        foreach (var queue in _declaredNames.Keys.Union(queues, StringComparer.Ordinal))
        {
            await publisher.QueueDeleteAsync(BrokerQueue(queue), ifUnused: false, ifEmpty: false, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        await publisher.QueueDeleteAsync(DeadExchange, ifUnused: false, ifEmpty: false, cancellationToken: cancellationToken).ConfigureAwait(false);
        await publisher.ExchangeDeleteAsync(DeadExchange, ifUnused: false, cancellationToken: cancellationToken).ConfigureAwait(false);
        await publisher.ExchangeDeleteAsync(Exchange, ifUnused: false, cancellationToken: cancellationToken).ConfigureAwait(false);
        await publisher.ExchangeDeleteAsync(NotifyExchange, ifUnused: false, cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Whether queues are declared as quorum queues: asked for, or <see cref="RabbitMqQueueType.Auto"/> on a
    /// broker that has them (RabbitMQ 3.8 and later, by the version it announces).</summary>
    internal static bool UsesQuorumQueues(RabbitMqQueueType type, IDictionary<string, object?>? serverProperties)
    {
        if (type != RabbitMqQueueType.Auto)
        {
            return type == RabbitMqQueueType.Quorum;
        }
        var version = serverProperties?.TryGetValue("version", out var value) == true
            ? value switch
            {
                byte[] bytes => System.Text.Encoding.UTF8.GetString(bytes),
                string text => text,
                _ => null,
            }
            : null;
        var parts = (version ?? "").Split('.');
        return parts.Length >= 2
            && int.TryParse(parts[0], System.Globalization.CultureInfo.InvariantCulture, out var major)
            && int.TryParse(parts[1], System.Globalization.CultureInfo.InvariantCulture, out var minor)
            && (major > 3 || (major == 3 && minor >= 8));
    }

    [LoggerMessage(EventId = 5010, Level = LogLevel.Information, Message = "RabbitMQ queue {Queue} exists as a classic queue and stays one (QueueType Auto would declare new queues as quorum queues)")]
    private static partial void LogExistingClassicQueue(ILogger logger, string queue);
}
