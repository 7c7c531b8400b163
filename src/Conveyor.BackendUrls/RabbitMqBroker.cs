using System.Data.Common;
using Conveyor.RabbitMQ;

namespace Conveyor.Backends;

/// <summary>A RabbitMQ broker named by an <c>amqp://</c> or <c>amqps://</c> URL, playing the queue role under a prefix,
/// beside a SQL database that stores the rest. Dropping it deletes the exchanges and queues under the prefix, then the
/// database.</summary>
/// <param name="Url">The broker's URL.</param>
/// <param name="Store">The SQL database for state, results and coordination.</param>
/// <param name="Prefix">Prefix of the exchange and queue names, or null for the backend's default (<c>conveyor</c>).</param>
public sealed record RabbitMqBroker(string Url, SqlDatabase Store, string? Prefix = null) : BackendLocation
{
    /// <summary>Applies this broker to the backend's options.</summary>
    public void Apply(RabbitMqBackendOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Url = Url;
        if (Prefix is not null)
        {
            options.Prefix = Prefix;
        }
    }

    /// <inheritdoc />
    public override ConveyorBuilder Use(ConveyorBuilder builder) => Store.Use(builder).UseRabbitMq(Apply);

    /// <inheritdoc />
    /// <remarks>The backend owns its store: disposing it disposes both.</remarks>
    public override IConveyorBackend Create(TimeProvider? time = null)
    {
        var options = new RabbitMqBackendOptions { OwnsStore = true };
        Apply(options);
        return new RabbitMqBackend(Store.Create(time), options, time);
    }

    /// <summary>Deletes the exchanges and queues under the prefix, then drops the store.</summary>
    public override async Task DropAsync(CancellationToken cancellationToken)
    {
        var backend = (RabbitMqBackend)Create();
        await using (backend.ConfigureAwait(false))
        {
            // The broker cannot list queues by prefix: the store names the queues that had tasks, and the default one,
            // which every process uses, is deleted even when the store was never created.
            IEnumerable<string> queues = [QueueNames.Default];
            try
            {
                queues = queues.Concat((await backend.Store.GetQueuesAsync(finishedCountLimit: 1, cancellationToken).ConfigureAwait(false)).Select(q => q.Name));
            }
            catch (DbException)
            {
                // No tables: nothing ran on this store.
            }
            await backend.DeleteBrokerObjectsAsync(queues, cancellationToken).ConfigureAwait(false);
        }
        await Store.DropAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    /// <remarks>The store's <c>DATABASE_URL</c>, <c>AMQP_URL</c> and the prefix.</remarks>
    public override IReadOnlyDictionary<string, string> ToEnvironment()
    {
        var environment = new Dictionary<string, string>(Store.ToEnvironment()) { ["AMQP_URL"] = Url };
        if (Prefix is not null)
        {
            environment["CONVEYOR_RABBITMQ__PREFIX"] = Prefix;
        }
        return environment;
    }

    // Keeps the password out of logs and exception messages.
    /// <inheritdoc />
    public override string ToString() => $"RabbitMqBroker {{ Store = {Store}, Prefix = {Prefix} }}";
}
