using Conveyor.Backends;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Conveyor.Testing;

/// <summary>
/// Conveyor for one test, with no host and no worker: the app's tasks registered on an <see cref="InMemoryBackend"/>,
/// the normal <see cref="ITaskClient"/> to enqueue with, <see cref="RunPendingAsync"/> to run what was enqueued in the
/// test's own flow (Sidekiq's <c>fake!</c>, River's <c>rivertest</c>), and assertions on what was enqueued. Call
/// <see cref="InlineExecutionConveyorBuilderExtensions.UseInlineExecution"/> in <c>configure</c> to run each task as
/// it is enqueued instead.
/// </summary>
/// <example>
/// <code>
/// await using var harness = ConveyorTestHarness.Create(c => c.AddTask&lt;ScoreFlight&gt;("flights.score"));
/// await harness.Client.EnqueueAsync("flights.score", new FlightArgs(42));
/// harness.RequireEnqueued("flights.score", new { flightId = 42 });
/// await harness.RunPendingAsync();
/// </code>
/// </example>
public sealed class ConveyorTestHarness : IAsyncDisposable, IDisposable
{
    private readonly ServiceProvider _services;

    private ConveyorTestHarness(ServiceProvider services)
    {
        _services = services;
        Backend = services.GetRequiredService<IConveyorBackend>() as InMemoryBackend ?? throw new InvalidOperationException(
            "ConveyorTestHarness runs on the in-memory backend; do not configure another backend in it.");
        Runner = services.GetRequiredService<InlineTaskRunner>();
        Client = services.GetRequiredService<ITaskClient>();
    }

    /// <summary>
    /// Builds a container with Conveyor, the tasks and services the test configures, and an in-memory backend (unless
    /// <paramref name="configure"/> chose one). Loggers are no-ops unless <paramref name="services"/> adds logging.
    /// </summary>
    /// <param name="configure">Registers tasks and Conveyor settings, as the app does on its <see cref="ConveyorBuilder"/>.</param>
    /// <param name="services">Registers what the handlers depend on (fakes of the app's services).</param>
    /// <param name="time">The clock of the backend and the client; <see cref="TimeProvider.System"/> when null. Pass a
    /// fake clock to run delayed tasks and retries by moving it.</param>
    public static ConveyorTestHarness Create(Action<ConveyorBuilder> configure, Action<IServiceCollection>? services = null, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(configure);
        var collection = new ServiceCollection();
        if (time is not null)
        {
            collection.AddSingleton(time);
        }
        services?.Invoke(collection);
        var builder = collection.AddConveyor();
        configure(builder);
        if (!collection.Any(d => d.ServiceType == typeof(IConveyorBackend)))
        {
            builder.UseInMemoryBackend();
        }
        collection.TryAddSingleton<InlineTaskRunner>();
        collection.TryAddSingleton<ILoggerFactory>(NullLoggerFactory.Instance);
        collection.TryAdd(ServiceDescriptor.Singleton(typeof(ILogger<>), typeof(Logger<>)));
        return new ConveyorTestHarness(collection.BuildServiceProvider(new ServiceProviderOptions { ValidateScopes = true }));
    }

    /// <summary>The container: resolve the app's services from it.</summary>
    public IServiceProvider Services => _services;

    /// <summary>The client the app enqueues with.</summary>
    public ITaskClient Client { get; }

    /// <summary>The backend every task is stored in.</summary>
    public InMemoryBackend Backend { get; }

    /// <summary>Runs tasks in the test's flow.</summary>
    public InlineTaskRunner Runner { get; }

    /// <summary>Every task enqueued so far, in enqueue order, as it is now.</summary>
    public IReadOnlyList<TaskRecord> Enqueued => Backend.GetTasks();

    /// <inheritdoc cref="InlineTaskRunner.RunPendingAsync"/>
    public Task<int> RunPendingAsync(CancellationToken cancellationToken = default) => Runner.RunPendingAsync(cancellationToken);

    /// <inheritdoc cref="EnqueuedTaskAssertions.AssertEnqueued"/>
    public IReadOnlyList<TaskRecord> AssertEnqueued(string task, object? args = null, string? queue = null, Func<TaskRecord, bool>? where = null) =>
        Backend.AssertEnqueued(task, args, queue, where);

    /// <inheritdoc cref="EnqueuedTaskAssertions.RequireEnqueued"/>
    public TaskRecord RequireEnqueued(string task, object? args = null, string? queue = null, Func<TaskRecord, bool>? where = null) =>
        Backend.RequireEnqueued(task, args, queue, where);

    /// <inheritdoc cref="EnqueuedTaskAssertions.AssertNotEnqueued"/>
    public void AssertNotEnqueued(string task, object? args = null, string? queue = null, Func<TaskRecord, bool>? where = null) =>
        Backend.AssertNotEnqueued(task, args, queue, where);

    /// <summary>Disposes the container and the services it built.</summary>
    public ValueTask DisposeAsync() => _services.DisposeAsync();

    /// <summary>Disposes the container and the services it built.</summary>
    public void Dispose() => _services.Dispose();
}
