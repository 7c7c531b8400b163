namespace Conveyor.Conformance;

/// <summary>
/// What a backend's test project gives the conformance suites: how to build a clean backend and another instance on its
/// storage, and how to remove them. Every suite is generic over it (<c>QueueLeaseConformance&lt;TFactory&gt;</c>), so
/// a backend registers a suite in one line: <c>public sealed class SqliteQueueLeaseTests : QueueLeaseConformance&lt;SqliteTestBackend&gt;;</c>.
/// </summary>
/// <remarks>
/// A new factory is made for every test (xunit makes a new instance of the test class per test), so an implementation
/// may keep state for one test; state shared between tests (a connection) belongs in a static. What the backend can do
/// is not restated here: gates read <see cref="IConveyorBackend.Capabilities"/> from the backend itself.
/// </remarks>
public interface IConformanceBackendFactory
{
    /// <summary>
    /// Builds a backend on storage of its own (a new file, schema, database or key prefix), migrated and empty, that
    /// takes every time it compares from <paramref name="time"/>.
    /// </summary>
    Task<IConveyorBackend> CreateAsync(TimeProvider time);

    /// <summary>Releases a backend built by <see cref="CreateAsync"/> and removes its storage. By default disposes it.</summary>
    ValueTask DisposeAsync(IConveyorBackend backend) => DisposeInstanceAsync(backend);

    /// <summary>
    /// Builds another instance on <paramref name="backend"/>'s storage (the same file, schema, key prefix or exchange
    /// prefix), as another process would open it, taking its time from <paramref name="time"/>. Suites that need two
    /// processes' views (the notifier's) use it.
    /// </summary>
    Task<IConveyorBackend> CreatePeerAsync(IConveyorBackend backend, TimeProvider time);

    /// <summary>Releases an instance built by <see cref="CreatePeerAsync"/>, leaving the storage it shares. By default
    /// disposes it.</summary>
    ValueTask DisposePeerAsync(IConveyorBackend peer) => DisposeInstanceAsync(peer);

    /// <summary>Disposes <paramref name="backend"/> when it is disposable.</summary>
    protected static async ValueTask DisposeInstanceAsync(IConveyorBackend backend)
    {
        switch (backend)
        {
            case IAsyncDisposable asyncDisposable:
                await asyncDisposable.DisposeAsync();
                break;
            case IDisposable disposable:
                disposable.Dispose();
                break;
        }
    }
}
