using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Conveyor.Testing;

/// <summary>Registration of inline execution.</summary>
public static class InlineExecutionConveyorBuilderExtensions
{
    /// <summary>
    /// Runs every task enqueued through <see cref="ITaskClient"/> before the enqueue returns, in the caller's flow
    /// (Sidekiq's <c>inline!</c>): the handler runs in its own DI scope, retries run per the task's attempts, and the
    /// returned <see cref="EnqueueResult.State"/> is the task's state afterwards. A task enqueued with a delay or ETA
    /// stays scheduled until a <see cref="InlineTaskRunner.RunPendingAsync"/> once its time has come; a task with no
    /// handler registered stays queued. Needs <see cref="InMemoryConveyorBuilderExtensions.UseInMemoryBackend"/>, and
    /// turns this process's worker off (<see cref="ConveyorOptions.RunWorker"/>), which would otherwise race the
    /// inline runs for the same tasks.
    /// </summary>
    /// <param name="builder">The Conveyor builder.</param>
    /// <param name="configure">Changes to <see cref="InlineExecutionOptions"/>.</param>
    public static ConveyorBuilder UseInlineExecution(this ConveyorBuilder builder, Action<InlineExecutionOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var services = builder.Services;
        if (configure is not null)
        {
            services.Configure(configure);
        }
        if (services.Any(d => d.ServiceType == typeof(InlineExecutionMarker)))
        {
            return builder;
        }
        services.AddSingleton<InlineExecutionMarker>();
        services.TryAddSingleton<InlineTaskRunner>();
        services.Configure<ConveyorOptions>(o => o.RunWorker = false);
        // Decorates the client AddConveyor registered (an internal type of the core), whatever form its registration has.
        var inner = services.Last(d => d.ServiceType == typeof(ITaskClient));
        services.Remove(inner);
        services.AddSingleton<ITaskClient>(sp => new InlineTaskClient(Create(sp, inner), sp.GetRequiredService<InlineTaskRunner>()));
        return builder;
    }

    private static ITaskClient Create(IServiceProvider services, ServiceDescriptor descriptor) => descriptor switch
    {
        { ImplementationInstance: ITaskClient instance } => instance,
        { ImplementationFactory: { } factory } => (ITaskClient)factory(services),
        { ImplementationType: { } type } => (ITaskClient)ActivatorUtilities.CreateInstance(services, type),
        _ => throw new InvalidOperationException("The registered ITaskClient cannot be built."),
    };

    /// <summary>Marks a container whose client is already decorated, so a second call changes nothing.</summary>
    private sealed class InlineExecutionMarker;
}

/// <summary>The client of inline execution: enqueues through the registered client, then runs what it created.</summary>
internal sealed class InlineTaskClient(ITaskClient inner, InlineTaskRunner runner) : ITaskClient
{
    /// <summary>How deep tasks run inline may enqueue tasks run inline, before it is taken for endless recursion.</summary>
    private const int MaxDepth = 64;

    private static readonly AsyncLocal<int> Depth = new();

    public async Task<EnqueueResult> EnqueueAsync(TaskRequest request, CancellationToken cancellationToken = default)
    {
        var results = await EnqueueManyAsync([request], cancellationToken).ConfigureAwait(false);
        return results[0];
    }

    public async Task<IReadOnlyList<EnqueueResult>> EnqueueManyAsync(IReadOnlyList<TaskRequest> requests, CancellationToken cancellationToken = default)
    {
        if (Depth.Value >= MaxDepth)
        {
            throw new InvalidOperationException($"Tasks run inline enqueued tasks {MaxDepth} deep: does a task enqueue itself without end?");
        }
        var results = (await inner.EnqueueManyAsync(requests, cancellationToken).ConfigureAwait(false)).ToArray();
        Depth.Value++;
        try
        {
            (TaskRecord Record, Exception Failure)? firstFailure = null;
            for (var i = 0; i < results.Length; i++)
            {
                // A task returned for an existing idempotency key is not run again; a scheduled one waits for its time.
                if (!results[i].Created || results[i].State != TaskState.Queued)
                {
                    continue;
                }
                var (record, failure) = await runner.RunTaskAsync(results[i].Id, cancellationToken).ConfigureAwait(false);
                if (record is not null)
                {
                    results[i] = results[i] with { State = record.State };
                    if (failure is not null && firstFailure is null)
                    {
                        firstFailure = (record, failure);
                    }
                }
            }
            if (firstFailure is { } failed)
            {
                runner.ThrowIfFailed(failed.Record, failed.Failure);
            }
            return results;
        }
        finally
        {
            Depth.Value--;
        }
    }

    public Task<CancelOutcome> CancelAsync(Guid taskId, CancellationToken cancellationToken = default) => inner.CancelAsync(taskId, cancellationToken);

    /// <summary>Queues the matching tasks again and runs what is then pending (<see cref="InlineTaskRunner.RunPendingAsync"/>),
    /// as enqueues would.</summary>
    public async Task<int> RetryManyAsync(TaskFilter filter, CancellationToken cancellationToken = default)
    {
        var retried = await inner.RetryManyAsync(filter, cancellationToken).ConfigureAwait(false);
        if (retried > 0)
        {
            await runner.RunPendingAsync(cancellationToken).ConfigureAwait(false);
        }
        return retried;
    }

    public Task<int> PurgeAsync(TaskFilter filter, CancellationToken cancellationToken = default) => inner.PurgeAsync(filter, cancellationToken);

    /// <summary>Queues the task again and runs it, as an enqueue would.</summary>
    public async Task<RetryOutcome> RetryAsync(Guid taskId, CancellationToken cancellationToken = default)
    {
        var outcome = await inner.RetryAsync(taskId, cancellationToken).ConfigureAwait(false);
        if (outcome == RetryOutcome.Requeued)
        {
            await runner.RunAsync(taskId, cancellationToken).ConfigureAwait(false);
        }
        return outcome;
    }

    public Task<TaskRecord?> GetAsync(Guid taskId, CancellationToken cancellationToken = default) => inner.GetAsync(taskId, cancellationToken);
}
