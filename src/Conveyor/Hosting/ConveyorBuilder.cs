using Conveyor.Backends;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

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
    /// the handler is resolved in a new DI scope for every attempt. A <see cref="TaskRetryAttribute"/> on the handler sets
    /// the task's retry defaults first; <paramref name="configure"/> runs after it, so code at registration wins.</summary>
    /// <exception cref="ArgumentException">The defaults are invalid (a retry policy out of range, attempts out of range).</exception>
    public ConveyorBuilder AddTask<THandler>(string name, Action<TaskDefaults>? configure = null) where THandler : class
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        var defaults = new TaskDefaults();
        TaskRetryAttribute.ApplyTo<THandler>(defaults);
        configure?.Invoke(defaults);
        if (LimitRules.CheckTaskDefaults(defaults) is { } problem)
        {
            throw new ArgumentException($"Task '{name}': {problem}", nameof(configure));
        }
        Registry.Add(TaskRegistry.Describe<THandler>(name, defaults));
        Services.TryAddScoped<THandler>();
        return this;
    }

    /// <summary>Adds <typeparamref name="TMiddleware"/> (a singleton) to the middleware around every enqueue, after those
    /// registered before it. See <see cref="IEnqueueMiddleware"/>.</summary>
    public ConveyorBuilder UseEnqueueMiddleware<TMiddleware>() where TMiddleware : class, IEnqueueMiddleware
    {
        Services.TryAddSingleton<TMiddleware>();
        Services.AddSingleton<IEnqueueMiddleware>(sp => sp.GetRequiredService<TMiddleware>());
        return this;
    }

    /// <summary>Adds <typeparamref name="TMiddleware"/> (a singleton) to the middleware around every attempt a worker
    /// runs, inside those registered before it. See <see cref="ITaskMiddleware"/>.</summary>
    public ConveyorBuilder UseTaskMiddleware<TMiddleware>() where TMiddleware : class, ITaskMiddleware
    {
        Services.TryAddSingleton<TMiddleware>();
        Services.AddSingleton<ITaskMiddleware>(sp => sp.GetRequiredService<TMiddleware>());
        return this;
    }

    /// <summary>Adds <typeparamref name="TObserver"/> (a singleton) to the observers of this process's task events.
    /// See <see cref="ITaskEventObserver"/>.</summary>
    public ConveyorBuilder AddEventObserver<TObserver>() where TObserver : class, ITaskEventObserver
    {
        Services.TryAddSingleton<TObserver>();
        Services.AddSingleton<ITaskEventObserver>(sp => sp.GetRequiredService<TObserver>());
        return this;
    }

    /// <summary>Calls <paramref name="observer"/> for each task event this process raises (in line: keep it quick).
    /// <c>OnTaskEvent(e =&gt; { if (e.IsFailure) … })</c> is Celery's <c>task_failure</c>.</summary>
    public ConveyorBuilder OnTaskEvent(Action<TaskEvent> observer)
    {
        ArgumentNullException.ThrowIfNull(observer);
        Services.AddSingleton<ITaskEventObserver>(new DelegateTaskEventObserver(observer));
        return this;
    }

    private sealed class DelegateTaskEventObserver(Action<TaskEvent> observer) : ITaskEventObserver
    {
        public void OnEvent(TaskEvent taskEvent) => observer(taskEvent);
    }

    /// <summary>Declares a periodic schedule in code: the leader writes it to the backend at the start of each term (added
    /// when missing, redefined when it differs, its state kept). Checked here: a bad field throws
    /// <see cref="Scheduling.ScheduleValidationException"/> naming it.</summary>
    public ConveyorBuilder AddSchedule(Scheduling.ScheduleDefinition definition)
    {
        Scheduling.ScheduleDefinitionValidator.ThrowIfInvalid(definition);
        Services.AddSingleton(new Scheduling.DeclaredSchedule(definition));
        return this;
    }

    /// <summary>Declares a cron schedule in code that enqueues <paramref name="task"/> with <paramref name="args"/>
    /// (serialized to JSON). See <see cref="AddSchedule(Scheduling.ScheduleDefinition)"/>.</summary>
    public ConveyorBuilder AddSchedule<TArgs>(string name, string cron, string task, TArgs args, string timeZone = "UTC") =>
        AddSchedule(new Scheduling.ScheduleDefinition
        {
            Name = name,
            Cron = cron,
            TimeZone = timeZone,
            Task = task,
            Args = System.Text.Json.JsonSerializer.Serialize(args, ConveyorJson.Options),
        });

    /// <summary>Uses <paramref name="factory"/> to build the backend (called once). With
    /// <see cref="UseEncryption"/>, before or after this call, the backend is wrapped in an
    /// <see cref="Encryption.EncryptingBackend"/>.</summary>
    public ConveyorBuilder UseBackend(Func<IServiceProvider, IConveyorBackend> factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        Services.RemoveAll<IConveyorBackend>();
        Services.AddSingleton(sp => Encryption.EncryptingBackend.Wrap(factory(sp), sp));
        return this;
    }

    /// <summary>
    /// Encrypts task arguments, results and error messages at rest with AES-256-GCM under <paramref name="keys"/> (the first
    /// key encrypts, every key decrypts): the backend, registered before or after this call, is wrapped in an
    /// <see cref="Encryption.EncryptingBackend"/>, which encrypts what it stores and decrypts what it reads, and a task whose
    /// arguments cannot be decrypted fails with <see cref="Encryption.PayloadDecryptionException"/>. Every process that
    /// shares the backend needs the keys. Schedules' arguments, headers and names stay in clear (docs/security.md).
    /// Calling it again replaces the keys.
    /// </summary>
    public ConveyorBuilder UseEncryption(Encryption.PayloadKeyRing keys)
    {
        ArgumentNullException.ThrowIfNull(keys);
        Services.RemoveAll<Encryption.PayloadCipher>();
        Services.AddSingleton(new Encryption.PayloadCipher(keys));
        if (!Services.Any(d => d.ServiceType == typeof(ITaskMiddleware) && d.ImplementationInstance is Encryption.PayloadDecryptionMiddleware))
        {
            Services.AddSingleton<ITaskMiddleware>(new Encryption.PayloadDecryptionMiddleware());
        }
        // A backend registered without UseBackend (services.AddSingleton<IConveyorBackend>(…)) is wrapped here; one
        // registered with it wraps itself (Wrap leaves a wrapped backend alone).
        if (Services.LastOrDefault(d => d.ServiceType == typeof(IConveyorBackend)) is { } registered)
        {
            Func<IServiceProvider, IConveyorBackend> inner = registered switch
            {
                { ImplementationInstance: IConveyorBackend instance } => _ => instance,
                { ImplementationFactory: { } create } => sp => (IConveyorBackend)create(sp),
                _ => sp => (IConveyorBackend)ActivatorUtilities.CreateInstance(sp, registered.ImplementationType!),
            };
            Services.RemoveAll<IConveyorBackend>();
            Services.AddSingleton(sp => Encryption.EncryptingBackend.Wrap(inner(sp), sp));
        }
        return this;
    }
}

/// <summary>Registration of Conveyor in a service collection.</summary>
public static class ConveyorServiceCollectionExtensions
{
    /// <summary>Adds the client alone, for an app that enqueues and reads tasks but runs none: no worker and no
    /// maintenance services (<see cref="ConveyorOptions.RunWorker"/> and <see cref="ConveyorOptions.RunScheduler"/> off,
    /// unless <paramref name="configure"/> turns them on). A library registers this.</summary>
    public static ConveyorBuilder AddConveyorClient(this IServiceCollection services, Action<ConveyorOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.Configure<ConveyorOptions>(o =>
        {
            o.RunWorker = false;
            o.RunScheduler = false;
        });
        return services.AddConveyor(configure);
    }

    /// <summary>Adds the client, a worker and the scheduler's maintenance services: a process that runs tasks.</summary>
    public static ConveyorBuilder AddConveyorWorker(this IServiceCollection services, Action<ConveyorOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.Configure<ConveyorOptions>(o => o.RunWorker = true);
        return services.AddConveyor(configure);
    }

    /// <summary>Adds the client, the worker and the scheduler with their settings bound from
    /// <paramref name="configuration"/> (a section such as <c>Conveyor</c>: <c>Worker:Concurrency</c>, …), then
    /// <paramref name="configure"/>.</summary>
    public static ConveyorBuilder AddConveyor(this IServiceCollection services, Microsoft.Extensions.Configuration.IConfiguration configuration, Action<ConveyorOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        var builder = services.AddConveyor();
        services.AddOptions<ConveyorOptions>().Bind(configuration);
        if (configure is not null)
        {
            services.Configure(configure);
        }
        return builder;
    }

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
            services.AddOptions<ConveyorOptions>().ValidateOnStart();
            services.AddSingleton<IValidateOptions<ConveyorOptions>, ConveyorOptionsValidator>();
            services.TryAddSingleton(TimeProvider.System);
            services.TryAddSingleton<SchedulerSignal>();
            services.TryAddSingleton<ITaskClient, TaskClient>();
            services.TryAddSingleton<Workflows.IWorkflowClient, Workflows.WorkflowClient>();
            services.TryAddSingleton<WorkerStatus>();
            services.TryAddSingleton<ConveyorMetrics>();
            services.TryAddSingleton(sp => new TaskEventBus(sp.GetServices<ITaskEventObserver>(),
                sp.GetService<Microsoft.Extensions.Logging.ILogger<TaskEventBus>>(), sp.GetRequiredService<ConveyorMetrics>()));
            services.TryAddSingleton<EnqueuePipeline>();
            services.TryAddSingleton<ExecutionPipeline>();
            services.TryAddSingleton<LimitGate>();
            // Tracing first, so that its activity is current for everything inside it (log scopes, the handler's enqueues);
            // then logging, outside every other middleware: it sees what each did.
            services.AddSingleton<ITaskMiddleware>(sp => sp.GetRequiredService<IOptions<ConveyorOptions>>().Value.TraceTasks
                ? new TaskTracingMiddleware()
                : NoMiddleware.Instance);
            // A container without logging (a test harness) gets a middleware that logs nowhere.
            services.AddSingleton(sp => new TaskLoggingMiddleware(
                sp.GetService<Microsoft.Extensions.Logging.ILogger<TaskLoggingMiddleware>>() ?? Microsoft.Extensions.Logging.Abstractions.NullLogger<TaskLoggingMiddleware>.Instance));
            services.AddSingleton<ITaskMiddleware>(sp => sp.GetRequiredService<IOptions<ConveyorOptions>>().Value.LogTasks
                ? sp.GetRequiredService<TaskLoggingMiddleware>()
                : NoMiddleware.Instance);
            services.AddHostedService<BackendStartupService>();
            services.AddHostedService<WorkerService>();
            // Worker processes: recycling, time limits, the second stop signal and a supervisor's stop (Supervision/).
            services.AddHostedService<WorkerRecycler>();
            services.AddHostedService<TimeLimitWatchdog>();
            services.AddHostedService<WorkerProcessSignals>();
            if (ConveyorSupervisor.ChildWorkerId is { } childWorkerId)
            {
                services.PostConfigure<ConveyorOptions>(o => o.Worker.Id = childWorkerId);
            }
            services.TryAddSingleton<LeaderElector>();
            services.TryAddSingleton<ILeadership>(sp => sp.GetRequiredService<LeaderElector>());
            services.AddHostedService(sp => sp.GetRequiredService<LeaderElector>());
            services.AddHostedService<TaskEventBridge>();
            services.AddHostedService<Workflows.WorkflowEndProbe>();
            services.AddHostedService<DuePromoter>();
            services.AddHostedService<LeaseReaper>();
            services.AddHostedService<RetentionCleaner>();
            services.AddHostedService<UniqueKeySweeper>();
            services.TryAddSingleton<Scheduling.ScheduleClient>();
            services.TryAddSingleton<Scheduling.IScheduleClient>(sp => sp.GetRequiredService<Scheduling.ScheduleClient>());
            services.AddHostedService<Scheduling.ScheduleRunner>();
        }
        if (configure is not null)
        {
            services.Configure(configure);
        }
        return new ConveyorBuilder(services, registry);
    }
}
