using Conveyor.Backends;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor.RabbitMQ;

/// <summary>Registration of the RabbitMQ backend.</summary>
public static class RabbitMqConveyorBuilderExtensions
{
    /// <summary>
    /// Moves the queue role to RabbitMQ at <see cref="RabbitMqBackendOptions.Url"/>, keeping the backend registered
    /// so far (call <c>UsePostgres</c> or <c>UseSqlite</c> first) as the store for state, results and coordination.
    /// </summary>
    public static ConveyorBuilder UseRabbitMq(this ConveyorBuilder builder, Action<RabbitMqBackendOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configure);
        var registered = builder.Services.LastOrDefault(d => d.ServiceType == typeof(IConveyorBackend))
            ?? throw new InvalidOperationException("UseRabbitMq needs a SQL store: call UsePostgres or UseSqlite before it.");
        Func<IServiceProvider, IConveyorBackend> store = registered switch
        {
            { ImplementationFactory: { } factory } => sp => (IConveyorBackend)factory(sp),
            { ImplementationInstance: IConveyorBackend instance } => _ => instance,
            { ImplementationType: { } type } => sp => (IConveyorBackend)ActivatorUtilities.GetServiceOrCreateInstance(sp, type),
            _ => throw new InvalidOperationException("UseRabbitMq cannot read the store backend's registration."),
        };
        builder.Services.AddOptions<RabbitMqBackendOptions>().Configure(configure);
        // The store's own registration owns (and disposes) it.
        builder.Services.PostConfigure<RabbitMqBackendOptions>(o => o.OwnsStore = false);
        builder.Services.AddSingleton(sp => new RabbitMqBackend(
            Unwrapped(store(sp)),
            sp.GetRequiredService<IOptions<RabbitMqBackendOptions>>().Value,
            sp.GetService<TimeProvider>(),
            sp.GetService<ILogger<RabbitMqBackend>>()));
        return builder.UseBackend(sp => sp.GetRequiredService<RabbitMqBackend>());
    }

    /// <summary>With encryption at rest (<see cref="ConveyorBuilder.UseEncryption"/>), UseBackend's factory wraps the
    /// store: the RabbitMQ backend takes the store itself, and is wrapped once as a whole.</summary>
    private static IConveyorBackend Unwrapped(IConveyorBackend store) =>
        store is Encryption.EncryptingBackend encrypted ? encrypted.Inner : store;
}
