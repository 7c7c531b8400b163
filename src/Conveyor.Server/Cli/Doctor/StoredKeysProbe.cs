using Conveyor.Backends;
using Conveyor.Server.Configuration;
using Conveyor.Server.Hosting;

namespace Conveyor.Server.Cli.Doctor;

/// <summary>What the backend holds of API keys, as far as <c>conveyor doctor</c> could read it.</summary>
/// <param name="Active">Stored keys not revoked, or null when they could not be read.</param>
/// <param name="Problem">Why they could not be read, or null.</param>
internal sealed record StoredKeys(int? Active, string? Problem);

/// <summary>Reads the stored API keys for <c>conveyor doctor</c>, within a time limit: a backend that is down or unreachable
/// makes the answer unknown, never a hang. It creates nothing: a SQLite file that does not exist holds no keys.</summary>
internal static class StoredKeysProbe
{
    /// <summary>How long the backend gets to answer, connection included.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);

    /// <summary>The stored keys of <paramref name="location"/>; a driver's error message is passed through <paramref name="redactor"/>,
    /// as it may repeat a connection string.</summary>
    public static async Task<StoredKeys> ReadAsync(Dictionary<string, string?> flags, BackendLocation location, SecretRedactor redactor, CancellationToken cancellationToken)
    {
        if (location is SqliteDatabase { Path: var path } && !File.Exists(path)
            || location is RabbitMqBroker { Store: SqliteDatabase { Path: var storePath } } && !File.Exists(storePath))
        {
            return new StoredKeys(0, null);
        }
        // The drivers log their connection failures; the finding says what failed, once.
        var quiet = new Dictionary<string, string?>(flags, StringComparer.OrdinalIgnoreCase) { [ConveyorConfiguration.LogLevelKey] = "none" };
        IHost host;
        try
        {
            host = ConveyorHosts.BuildHost(HostRole.Tool, quiet);
        }
        catch (ConveyorConfigurationException)
        {
            // The setting at fault is an item's finding of its own.
            return new StoredKeys(null, "the configuration does not build a backend (see the items that fail)");
        }
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(Timeout);
            // On the pool and under WaitAsync as well as the token: a backend that connects while it is built, or a driver
            // that ignores cancellation while it connects, still cannot hold the command.
            var read = Task.Run(async () =>
            {
                var backend = host.Services.GetRequiredService<IConveyorBackend>();
                return backend.ApiKeys is { } store
                    ? (await store.ListApiKeysAsync(timeout.Token).ConfigureAwait(false)).Count(k => k.RevokedAt is null)
                    : 0;
            }, timeout.Token);
            return new StoredKeys(await read.WaitAsync(Timeout, cancellationToken).ConfigureAwait(false), null);
        }
        catch (Exception ex) when (ex is TimeoutException || (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested))
        {
            return new StoredKeys(null, $"the {Describe(location)} did not answer within {Timeout.TotalSeconds:0} s");
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // Any driver's error (connection refused, no schema, authentication): the item is unknown, not failed.
            return new StoredKeys(null, $"the {Describe(location)} could not be read ({ex.GetType().Name}: {redactor.Redact(FirstLine(ex.Message))})");
        }
        finally
        {
            // Disposing closes connections, which a driver may hold on to while it still tries to connect: bounded too.
            try
            {
                await Task.Run(host.Dispose, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(2), CancellationToken.None).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                // The process ends soon after; the connection goes with it.
            }
        }
    }

    private static string FirstLine(string message) => message.Split('\n', 2)[0].Trim();

    private static string Describe(BackendLocation location) => location switch
    {
        SqliteDatabase => "SQLite database",
        PostgresDatabase => "PostgreSQL database",
        RedisKeyspace => "Redis server",
        RabbitMqBroker { Store: var store } => Describe(store),
        _ => "backend",
    };
}
