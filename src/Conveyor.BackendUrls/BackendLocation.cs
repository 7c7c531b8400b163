namespace Conveyor.Backends;

/// <summary>
/// Where a backend keeps what it holds, as URLs name it: a SQLite file, a PostgreSQL schema, Redis keys under a prefix,
/// or RabbitMQ exchanges and queues under a prefix beside a SQL database. Registered, built and dropped in one place,
/// for the server (<see cref="BackendUrls.Select"/>), the bench and the tests.
/// </summary>
public abstract record BackendLocation
{
    /// <summary>Registers this location's backend for every role.</summary>
    public abstract ConveyorBuilder Use(ConveyorBuilder builder);

    /// <summary>Builds a backend here (not migrated) that takes its time from <paramref name="time"/>.</summary>
    public abstract IConveyorBackend Create(TimeProvider? time = null);

    /// <summary>Removes what Conveyor holds here. For tests and benchmarks that made it fresh; irreversible. Every
    /// instance on an embedded database must be disposed first.</summary>
    public abstract Task DropAsync(CancellationToken cancellationToken);

    /// <summary>The environment variables that point a <c>conveyor</c> process here (docs/configuration.md).</summary>
    public abstract IReadOnlyDictionary<string, string> ToEnvironment();
}
