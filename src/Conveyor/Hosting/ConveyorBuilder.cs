using Conveyor.Backends;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;

namespace Conveyor;

/// <summary>Configures Conveyor: tasks, backend, worker.</summary>
public sealed class ConveyorBuilder
{
    internal ConveyorBuilder(IServiceCollection services, TaskRegistry registry)
    {
        Services = services;
        Registry = registry;
    }

    /// <summary>The service collection.</summary>
    public IServiceCollection Services { get; }

    /// <summary>The tasks registered so far.</summary>
    public TaskRegistry Registry { get; }

    /// <summary>Registers <typeparamref name="THandler"/> as the handler of task <paramref name="name"/>;
    /// the handler is resolved in a new DI scope for every attempt.</summary>
    public ConveyorBuilder AddTask<THandler>(string name, Action<TaskDefaults>? configure = null) where THandler : class
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        var defaults = new TaskDefaults();
        configure?.Invoke(defaults);
        Registry.Add(TaskRegistry.Describe<THandler>(name, defaults));
        Services.TryAddScoped<THandler>();
        return this;
    }

    /// <summary>Uses <paramref name="factory"/> to build the backend (called once).</summary>
    public ConveyorBuilder UseBackend(Func<IServiceProvider, IConveyorBackend> factory)
    {
        Services.RemoveAll<IConveyorBackend>();
        Services.AddSingleton(factory);
        return this;
    }
}

/// <summary>Registration of Conveyor in a service collection.</summary>
public static class ConveyorServiceCollectionExtensions
{
    /// <summary>Adds the client, the worker and the scheduler (as hosted services, each switchable
    /// in <see cref="ConveyorOptions"/>). Idempotent: a second call returns a builder over the same tasks.</summary>
    public static ConveyorBuilder AddConveyor(this IServiceCollection services, Action<ConveyorOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var existing = services.FirstOrDefault(d => d.ServiceType == typeof(TaskRegistry))?.ImplementationInstance as TaskRegistry;
        var registry = existing ?? new TaskRegistry();
        if (existing is null)
        {
            services.AddSingleton(registry);
            services.AddOptions<ConveyorOptions>();
            services.TryAddSingleton(TimeProvider.System);
            services.TryAddSingleton<SchedulerSignal>();
            services.TryAddSingleton<ITaskClient, TaskClient>();
            services.TryAddSingleton<WorkerStatus>();
            services.AddHostedService<BackendStartupService>();
            services.AddHostedService<WorkerService>();
            services.AddHostedService<SchedulerService>();
        }
        if (configure is not null)
        {
            services.Configure(configure);
        }
        return new ConveyorBuilder(services, registry);
    }
}
