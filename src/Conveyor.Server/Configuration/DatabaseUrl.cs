using Conveyor.Backends;

namespace Conveyor.Server.Configuration;

/// <summary>Reads <c>DATABASE_URL</c> (<see cref="SqlDatabaseUrl"/>, shared with the bench and the tests), empty meaning
/// <see cref="ServerOptions.DefaultDatabaseUrl"/>.</summary>
internal static class DatabaseUrl
{
    /// <summary>Parses <paramref name="url"/>; throws <see cref="ConveyorConfigurationException"/> saying what to change.</summary>
    public static SqlDatabase Parse(string? url)
    {
        try
        {
            return SqlDatabaseUrl.Parse(string.IsNullOrWhiteSpace(url) ? ServerOptions.DefaultDatabaseUrl : url);
        }
        catch (BackendUrlException ex)
        {
            throw new ConveyorConfigurationException(ex.Message, ex);
        }
    }
}
