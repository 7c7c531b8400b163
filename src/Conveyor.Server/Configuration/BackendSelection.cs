using Conveyor.Backends;

namespace Conveyor.Server.Configuration;

/// <summary>The backend the configuration selects: <see cref="BackendUrls.Select"/> (shared with the bench and the tests)
/// over <c>DATABASE_URL</c>, <c>REDIS_URL</c> and <c>AMQP_URL</c>, an empty <c>DATABASE_URL</c> meaning
/// <see cref="ServerOptions.DefaultDatabaseUrl"/>.</summary>
internal static class BackendSelection
{
    /// <summary>Selects the backend; throws <see cref="ConveyorConfigurationException"/> saying what to change.</summary>
    public static BackendLocation Select(ServerOptions server)
    {
        ArgumentNullException.ThrowIfNull(server);
        try
        {
            return BackendUrls.Select(server.DatabaseUrl, server.RedisUrl, server.AmqpUrl, ServerOptions.DefaultDatabaseUrl);
        }
        catch (BackendUrlException ex)
        {
            throw new ConveyorConfigurationException(ex.Message, ex);
        }
    }
}
