namespace Conveyor.Server.Configuration;

/// <summary>Whether the configuration moves the queue role to RabbitMQ, and where the broker is.</summary>
internal static class AmqpSelection
{
    /// <summary>The RabbitMQ URL from <c>AMQP_URL</c>, or null when it is not set.</summary>
    public static string? Select(ServerOptions server)
    {
        ArgumentNullException.ThrowIfNull(server);
        var url = server.AmqpUrl?.Trim();
        if (string.IsNullOrEmpty(url))
        {
            return null;
        }
        if (!url.StartsWith("amqp://", StringComparison.OrdinalIgnoreCase) && !url.StartsWith("amqps://", StringComparison.OrdinalIgnoreCase))
        {
            throw new ConveyorConfigurationException("AMQP_URL must start with amqp:// or amqps:// (TLS), such as amqp://user:password@127.0.0.1:5672/.");
        }
        return url;
    }
}
