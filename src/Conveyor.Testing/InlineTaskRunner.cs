using Conveyor.Backends;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Conveyor.Testing;

/// <summary>
/// Runs tasks of the in-memory backend in the caller's flow instead of on a worker: each attempt leases the task,
/// resolves its handler in a new DI scope, runs it under the task's time limit and stores the outcome through the
/// queue role, as the worker would, so the task's record shows the same states, attempts, errors and results. Used by
/// <see cref="InlineExecutionConveyorBuilderExtensions.UseInlineExecution"/> (run at enqueue) and by
/// <see cref="ConveyorTestHarness.RunPendingAsync"/> (run what is pending). Tasks with no handler registered in this
/// container are left queued, so that a test can assert that they were enqueued.
/// </summary>
public sealed class InlineTaskRunner
{
    /// <summary>The worker id inline attempts are leased to, kept on the finished task.</summary>
    public const string WorkerId = "inline";

    /// <summary>Most attempts one <see cref="RunPendingAsync"/> runs before it decides that tasks keep enqueueing
    /// tasks without end: 100,000.</summary>
    public const int MaxAttemptsPerRun = 100_000;

    private readonly InMemoryBackend _backend;
    private readonly TaskRegistry _registry;
    private readonly IServiceScopeFactory _scopes;
    private readonly TimeProvider _time;
    private readonly InlineExecutionOptions _options;
    private readonly ExecutionPipeline? _pipeline;
    private readonly TaskEventBus? _events;
    private readonly int _maxSnoozes;

    /// <summary>Creates a runner over the container's backend, which must be an <see cref="InMemoryBackend"/>.</summary>
    public InlineTaskRunner(IConveyorBackend backend, TaskRegistry registry, IServiceScopeFactory scopes, TimeProvider time,
        IOptions<InlineExecutionOptions> options, IServiceProvider services)
    {
        ArgumentNullException.ThrowIfNull(services);
        // The worker's middleware and events, so that a test sees what a worker would do (logging, user middleware, observers).
        _pipeline = services.GetService<ExecutionPipeline>();
        _events = services.GetService<TaskEventBus>();
        _maxSnoozes = services.GetService<IOptions<ConveyorOptions>>()?.Value.Worker.MaxSnoozes ?? new WorkerOptions().MaxSnoozes;
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(options);
        _backend = backend as InMemoryBackend ?? throw new InvalidOperationException(backend is Encryption.EncryptingBackend
            ? "Inline execution runs tasks of the in-memory backend as stored, without encryption at rest: leave UseEncryption out of the tests that use it."
            : $"Inline execution runs tasks of the in-memory backend, but the backend is '{backend.Name}': call UseInMemoryBackend() instead of another backend.");
        _registry = registry ?? throw new ArgumentNullException(nameof(registry));
        _scopes = scopes ?? throw new ArgumentNullException(nameof(scopes));
        _time = time ?? throw new ArgumentNullException(nameof(time));
        _options = options.Value;
    }

    /// <summary>
    /// Runs task <paramref name="taskId"/> now, attempt after attempt while it is ready (retries at once when
    /// <see cref="InlineExecutionOptions.SkipRetryDelays"/> is set), and returns it as stored afterwards. A task that is
    /// not ready (scheduled for later, running, finished, in a paused queue) or has no handler here is returned as it is.
    /// Throws <see cref="TaskExecutionException"/> when it ends dead and <see cref="InlineExecutionOptions.RethrowFailures"/> is set.
    /// </summary>
    public async Task<TaskRecord?> RunAsync(Guid taskId, CancellationToken cancellationToken = default)
    {
        var (record, failure) = await RunTaskAsync(taskId, cancellationToken).ConfigureAwait(false);
        ThrowIfFailed(record, failure);
        return record;
    }

    /// <summary>
    /// Promotes tasks whose time has come, then runs every ready task that has a handler here, highest priority first,
    /// then in enqueue order — including tasks that those tasks enqueue — until none is left. Returns how many attempts
    /// ran. With <see cref="InlineExecutionOptions.RethrowFailures"/> set, throws a <see cref="TaskExecutionException"/>
    /// for the first task that ended dead, once everything else has run.
    /// </summary>
    public async Task<int> RunPendingAsync(CancellationToken cancellationToken = default)
    {
        var attempts = 0;
        (TaskRecord Record, Exception Failure)? firstFailure = null;
        while (true)
        {
            await _backend.PromoteDueAsync(cancellationToken).ConfigureAwait(false);
            var ready = _backend.ReadyTasks(m => _registry.TryGet(m.Task, out _));
            if (ready.Count == 0)
            {
                break;
            }
            foreach (var id in ready)
            {
                var (record, failure, ran) = await RunTaskCountingAsync(id, cancellationToken).ConfigureAwait(false);
                attempts += ran;
                if (failure is not null && record is { State: TaskState.Dead } && firstFailure is null)
                {
                    firstFailure = (record, failure);
                }
            }
            if (attempts > MaxAttemptsPerRun)
            {
                throw new InvalidOperationException(
                    $"RunPendingAsync ran {attempts} attempts and tasks are still ready: do tasks enqueue tasks without end?");
            }
        }
        if (firstFailure is { } failed)
        {
            ThrowIfFailed(failed.Record, failed.Failure);
        }
        return attempts;
    }

    /// <summary>Runs the task like <see cref="RunAsync"/> but returns its last failure instead of throwing it.</summary>
    internal async Task<(TaskRecord? Record, Exception? Failure)> RunTaskAsync(Guid taskId, CancellationToken cancellationToken)
    {
        var (record, failure, _) = await RunTaskCountingAsync(taskId, cancellationToken).ConfigureAwait(false);
        return (record, failure);
    }

    internal void ThrowIfFailed(TaskRecord? record, Exception? failure)
    {
        if (_options.RethrowFailures && failure is not null && record is { State: TaskState.Dead })
        {
            throw new TaskExecutionException(record, failure);
        }
    }

    private async Task<(TaskRecord? Record, Exception? Failure, int Attempts)> RunTaskCountingAsync(Guid taskId, CancellationToken cancellationToken)
    {
        Exception? failure = null;
        var attempts = 0;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var record = await _backend.GetAsync(taskId, cancellationToken).ConfigureAwait(false);
            if (record is null || !_registry.TryGet(record.Task, out var descriptor)
                || _backend.TryLease(taskId, WorkerId, _options.LeaseDuration) is not { } lease)
            {
                return (record, failure, attempts);
            }
            attempts++;
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            Publish(lease, TaskEventKind.Started, TaskState.Running, null);
            var (completion, exception) = await InvokeAsync(lease, descriptor, cancellationToken).ConfigureAwait(false);
            failure = exception ?? failure;
            var overrides = await _backend.CompleteAsync([completion], CancellationToken.None).ConfigureAwait(false);
            if (overrides.Count == 0)
            {
                Publish(lease, completion.Kind.EventKind(), completion.Kind.StateAfter(), completion, System.Diagnostics.Stopwatch.GetElapsedTime(started));
            }
            else if (overrides[0].State is { } state)
            {
                // Settled otherwise, as the worker reports it: a retry whose cancel was asked is cancelled (no retry time).
                Publish(lease, CompletionKinds.EventKindOf(state), state, state == TaskState.Retrying ? completion : completion with { RetryAt = null },
                    System.Diagnostics.Stopwatch.GetElapsedTime(started));
            }
            if (completion.Kind != CompletionKind.Retry)
            {
                return (await _backend.GetAsync(taskId, CancellationToken.None).ConfigureAwait(false), failure, attempts);
            }
        }
    }

    // The worker's outcomes (WorkerService.InvokeAsync), in the caller's flow.
    private async Task<(Completion Completion, Exception? Failure)> InvokeAsync(Lease lease, TaskDescriptor descriptor, CancellationToken cancellationToken)
    {
        var message = lease.Message;
        if (message.ExpiresAt is { } expiresAt && expiresAt <= _time.GetUtcNow())
        {
            return (Settled(lease, CompletionKind.Expired), null);
        }
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        if (message.Timeout is { } timeout)
        {
            limit.CancelAfter(timeout);
        }
        var scope = _scopes.CreateAsyncScope();
        try
        {
            string? result;
            if (_pipeline is null || _pipeline.IsEmpty)
            {
                var context = new TaskContext(message, lease.Attempt, lease.IsRedelivery);
                result = await descriptor.InvokeAsync(scope.ServiceProvider, context, message.Args, limit.Token).ConfigureAwait(false);
            }
            else
            {
                var context = new TaskExecutionContext(message, lease.Attempt, lease.IsRedelivery, WorkerId, scope.ServiceProvider, limit.Token);
                await _pipeline.RunAsync(context).ConfigureAwait(false);
                result = context.Result;
            }
            return (Settled(lease, CompletionKind.Succeeded) with { Result = result }, null);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The caller gave up: the attempt is handed back unspent, as a worker's shutdown would.
            await _backend.ReleaseAsync([lease.Ref], CancellationToken.None).ConfigureAwait(false);
            throw;
        }
        catch (OperationCanceledException ex) when (limit.IsCancellationRequested)
        {
            var error = new TaskError(typeof(TimeoutException).FullName!, $"The attempt exceeded its time limit of {message.Timeout}.");
            return (SkipDelay(AttemptOutcomes.ByPolicy(lease, error, typeof(TimeoutException), _time.GetUtcNow())), ex);
        }
        catch (SnoozeTaskException ex)
        {
            // Not a failure: nothing to rethrow. Counted from the task's history, as the worker counts it.
            var snoozed = AttemptOutcomes.TrailingSnoozes(await _backend.GetAsync(message.Id, CancellationToken.None).ConfigureAwait(false));
            var completion = AttemptOutcomes.Snoozed(lease, ex.Delay, snoozed, descriptor.Defaults.MaxSnoozes ?? _maxSnoozes, message.Task, _time.GetUtcNow());
            return (SkipDelay(completion), completion.Kind == CompletionKind.Dead ? ex : null);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            return (SkipDelay(AttemptOutcomes.Failed(lease, ex, _time.GetUtcNow())), ex);
        }
        finally
        {
            await scope.DisposeAsync().ConfigureAwait(false);
        }
    }

    private void Publish(Lease lease, TaskEventKind kind, TaskState state, Completion? completion, TimeSpan? duration = null)
    {
        if (_events is not { IsObserved: true })
        {
            return;
        }
        _events.Publish(new TaskEvent
        {
            Kind = kind,
            State = state,
            TaskId = lease.Message.Id,
            Task = lease.Message.Task,
            Queue = lease.Message.Queue,
            Attempt = lease.Attempt,
            At = completion?.At ?? _time.GetUtcNow(),
            WorkerId = WorkerId,
            Duration = duration,
            Error = completion?.Error,
            RetryAt = completion?.RetryAt,
            Origin = WorkerId,
        });
    }

    private Completion Settled(Lease lease, CompletionKind kind) =>
        new() { Lease = lease.Ref, Kind = kind, Attempt = lease.Attempt, At = _time.GetUtcNow() };

    /// <summary>A retry at once when <see cref="InlineExecutionOptions.SkipRetryDelays"/> is set, so retries and snoozes happen within the call.</summary>
    private Completion SkipDelay(Completion completion) =>
        _options.SkipRetryDelays && completion.Kind == CompletionKind.Retry ? completion with { RetryAt = completion.At } : completion;
}
