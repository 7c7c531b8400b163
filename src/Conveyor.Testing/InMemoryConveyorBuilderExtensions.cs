using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Conveyor.Testing;

/// <summary>Registration of the in-memory backend.</summary>
public static class InMemoryConveyorBuilderExtensions
{
    /// <summary>
    /// Uses an <see cref="InMemoryBackend"/> for every role, on the <see cref="TimeProvider"/> registered in the
    /// container (<see cref="TimeProvider.System"/> unless a test registers a fake one before building it). The backend
    /// is also registered as itself, so tests can resolve it to assert on what was enqueued; so is an
    /// <see cref="InlineTaskRunner"/> to run what is pending.
    /// </summary>
    /// <param name="builder">The Conveyor builder.</param>
    /// <param name="storage">State to share with other instances (another host in the same test); a new one when null.</param>
    public static ConveyorBuilder UseInMemoryBackend(this ConveyorBuilder builder, InMemoryStorage? storage = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.RemoveAll<InMemoryBackend>();
        builder.Services.AddSingleton(sp => new InMemoryBackend(storage ?? new InMemoryStorage(), sp.GetService<TimeProvider>()));
        builder.Services.TryAddSingleton<InlineTaskRunner>();
        return builder.UseBackend(sp => sp.GetRequiredService<InMemoryBackend>());
    }
}
