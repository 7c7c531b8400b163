using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Conveyor.RabbitMQ;

/// <summary>
/// A consumer that reports a cancel sent by the broker (<c>basic.cancel</c>: its queue was deleted, by an operator or a
/// policy, or a cluster moved it), which the client otherwise only records: the channel stays open, and nothing is
/// delivered any more. A cancel this process asked for, or the channel's close, is not reported.
/// </summary>
internal sealed class BrokerCancellableConsumer(IChannel channel, Action cancelledByBroker) : AsyncEventingBasicConsumer(channel)
{
    public override async Task HandleBasicCancelAsync(string consumerTag, CancellationToken cancellationToken = default)
    {
        await base.HandleBasicCancelAsync(consumerTag, cancellationToken).ConfigureAwait(false);
        cancelledByBroker();
    }
}
