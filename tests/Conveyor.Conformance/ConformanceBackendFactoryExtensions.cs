namespace Conveyor.Conformance;

/// <summary>What every <see cref="IConformanceBackendFactory"/> does alike.</summary>
public static class ConformanceBackendFactoryExtensions
{
    /// <summary>Migrates <paramref name="backend"/>, which <paramref name="factory"/> has just built, and returns it; when
    /// the migration fails, disposes it through the factory (which removes its storage) and rethrows.</summary>
    public static async Task<IConveyorBackend> MigrateOrDisposeAsync(this IConformanceBackendFactory factory, IConveyorBackend backend)
    {
        ArgumentNullException.ThrowIfNull(factory);
        ArgumentNullException.ThrowIfNull(backend);
        try
        {
            await backend.MigrateAsync(CancellationToken.None);
        }
        catch
        {
            await factory.DisposeAsync(backend);
            throw;
        }
        return backend;
    }
}
