using Conveyor.Backends;

namespace Conveyor;

/// <summary>The default <see cref="ITaskClient"/>: validates, applies task defaults and calls the backend.</summary>
internal sealed class TaskClient(IConveyorBackend backend, TaskRegistry registry, TimeProvider time, SchedulerSignal signal,
    EnqueuePipeline pipeline, TaskEventBus events, WorkerStatus status, Microsoft.Extensions.Options.IOptions<ConveyorOptions> options) : ITaskClient
{
    public async Task<EnqueueResult> EnqueueAsync(TaskRequest request, CancellationToken cancellationToken = default)
    {
        var results = await EnqueueManyAsync([request], cancellationToken).ConfigureAwait(false);
        return results[0];
    }

    public Task<IReadOnlyList<EnqueueResult>> EnqueueManyAsync(IReadOnlyList<TaskRequest> requests, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(requests);
        if (requests.Count == 0)
        {
            return Task.FromResult<IReadOnlyList<EnqueueResult>>([]);
        }
        // No span without a listener: the enqueue costs the check (the current activity, if any, still goes in the headers).
        return ConveyorDiagnostics.ActivitySource.HasListeners()
            ? EnqueueTracedAsync(requests, cancellationToken)
            : EnqueueInContextAsync(requests, cancellationToken);
    }

    /// <summary>The enqueue inside a span <c>enqueue {task}</c> (kind Producer), whose context the messages carry.</summary>
    private async Task<IReadOnlyList<EnqueueResult>> EnqueueTracedAsync(IReadOnlyList<TaskRequest> requests, CancellationToken cancellationToken)
    {
        using var activity = ConveyorDiagnostics.ActivitySource.StartActivity(
            requests.Count == 1 ? $"enqueue {requests[0].Task}" : "enqueue", System.Diagnostics.ActivityKind.Producer);
        try
        {
            var results = await EnqueueInContextAsync(requests, cancellationToken).ConfigureAwait(false);
            if (activity is { IsAllDataRequested: true })
            {
                activity.SetTag("messaging.system", "conveyor");
                activity.SetTag("messaging.operation.type", "send");
                activity.SetTag("messaging.batch.message_count", requests.Count);
                if (results.Count == 1)
                {
                    activity.SetTag("messaging.message.id", results[0].Id.ToString());
                    activity.SetTag("conveyor.task", requests[0].Task);
                }
            }
            return results;
        }
        catch (Exception ex) when (activity is { IsAllDataRequested: true })
        {
            activity.SetStatus(System.Diagnostics.ActivityStatusCode.Error, ex.GetType().FullName);
            throw;
        }
    }

    /// <summary>Validates, builds the messages with the current trace context in their headers, and stores them.</summary>
    private async Task<IReadOnlyList<EnqueueResult>> EnqueueInContextAsync(IReadOnlyList<TaskRequest> requests, CancellationToken cancellationToken)
    {
        var errors = new List<FieldError>();
        for (var i = 0; i < requests.Count; i++)
        {
            TaskRequestValidator.Validate(requests[i], null, requireRegistered: false, requests.Count == 1 ? "" : $"tasks[{i}].", errors);
        }
        if (errors.Count > 0)
        {
            throw new TaskValidationException(errors);
        }
        var now = time.GetUtcNow();
        var messages = new TaskMessage[requests.Count];
        var anyScheduled = false;
        for (var i = 0; i < requests.Count; i++)
        {
            messages[i] = BuildMessage(requests[i], registry, now);
            anyScheduled |= messages[i].NotBefore is not null;
        }
        TraceContext.Inject(messages, options.Value.PropagateUnsampledTraces);
        var stored = await pipeline.RunAsync(messages, cancellationToken).ConfigureAwait(false);
        var results = new EnqueueResult[stored.Count];
        for (var i = 0; i < stored.Count; i++)
        {
            results[i] = stored[i].Created ? stored[i] with { Message = messages[i] } : stored[i];
        }
        if (anyScheduled)
        {
            signal.Notify();
        }
        if (events.IsObserved)
        {
            // With only the metrics listening, counted without building an event per task.
            var metricsOnly = events.HasSubscribers ? null : events.ListenedMetrics;
            for (var i = 0; i < results.Length; i++)
            {
                if (!results[i].Created)
                {
                    continue;
                }
                if (metricsOnly is not null)
                {
                    metricsOnly.Enqueued(messages[i].Task, messages[i].Queue);
                }
                else
                {
                    PublishEnqueued(messages[i], results[i].State, now);
                }
            }
        }
        return results;
    }

    internal static TaskMessage BuildMessage(TaskRequest request, TaskRegistry registry, DateTimeOffset now)
    {
        var defaults = registry.TryGet(request.Task, out var descriptor) ? descriptor.Defaults : null;
        var options = request.Options;
        DateTimeOffset? notBefore = options?.Eta ?? (options?.Delay is { } delay && delay > TimeSpan.Zero ? now + delay : null);
        return new TaskMessage
        {
            Id = Guid.CreateVersion7(now),
            Task = request.Task,
            Args = request.ArgsJson,
            Queue = options?.Queue ?? defaults?.Queue ?? QueueNames.Default,
            Priority = options?.Priority ?? defaults?.Priority ?? 0,
            NotBefore = notBefore,
            ExpiresAt = options?.ExpiresAt,
            MaxAttempts = options?.MaxAttempts ?? defaults?.MaxAttempts ?? 5,
            Retry = options?.Retry ?? defaults?.Retry ?? RetryPolicy.Default,
            Timeout = options?.Timeout ?? defaults?.Timeout,
            IdempotencyKey = options?.IdempotencyKey,
            UniqueKey = options?.UniqueKey,
            UniqueFor = options?.UniqueFor,
            Headers = options?.Headers,
            CreatedAt = now,
        };
    }

    private void PublishEnqueued(TaskMessage message, TaskState state, DateTimeOffset at) => events.Publish(new TaskEvent
    {
        Kind = TaskEventKind.Enqueued,
        State = state,
        TaskId = message.Id,
        Task = message.Task,
        Queue = message.Queue,
        At = at,
        Origin = status.WorkerId,
    });

    public async Task<CancelOutcome> CancelAsync(Guid taskId, CancellationToken cancellationToken = default)
    {
        var outcome = await backend.Queue.CancelAsync(taskId, cancellationToken).ConfigureAwait(false);
        // A running task's cancellation is the worker's event, once its handler stopped.
        if (outcome == CancelOutcome.Cancelled && events.IsObserved)
        {
            await PublishChangeAsync(taskId, TaskEventKind.Cancelled, cancellationToken).ConfigureAwait(false);
        }
        return outcome;
    }

    public async Task<RetryOutcome> RetryAsync(Guid taskId, CancellationToken cancellationToken = default)
    {
        if (await backend.Store.GetAsync(taskId, cancellationToken).ConfigureAwait(false) is { } record
            && Workflows.WorkflowHeaders.StepOf(record.Headers).WorkflowId is not null)
        {
            return RetryOutcome.WorkflowStep;
        }
        var outcome = await backend.Queue.RetryAsync(taskId, cancellationToken).ConfigureAwait(false);
        if (outcome == RetryOutcome.Requeued && events.IsObserved)
        {
            await PublishChangeAsync(taskId, TaskEventKind.Enqueued, cancellationToken).ConfigureAwait(false);
        }
        return outcome;
    }

    public Task<int> RetryManyAsync(TaskFilter filter, CancellationToken cancellationToken = default) =>
        BulkTaskOperations.RetryAsync(backend, filter, options.Value.BulkBatchSize, events.IsObserved ? PublishRetried : null, cancellationToken);

    public Task<int> PurgeAsync(TaskFilter filter, CancellationToken cancellationToken = default) =>
        BulkTaskOperations.PurgeAsync(backend, filter, options.Value.BulkBatchSize, cancellationToken);

    private void PublishRetried(TaskRecord record) => events.Publish(new TaskEvent
    {
        Kind = TaskEventKind.Enqueued,
        State = TaskState.Queued,
        TaskId = record.Id,
        Task = record.Task,
        Queue = record.Queue,
        At = time.GetUtcNow(),
        Origin = status.WorkerId,
    });

    /// <summary>Raises the event of a change made by hand; reads the task for its name and queue (only when observed).</summary>
    private async Task PublishChangeAsync(Guid taskId, TaskEventKind kind, CancellationToken cancellationToken)
    {
        var record = await backend.Store.GetAsync(taskId, cancellationToken).ConfigureAwait(false);
        if (record is null)
        {
            return;
        }
        var (workflowId, stepId) = Workflows.WorkflowHeaders.StepOf(record.Headers);
        events.Publish(new TaskEvent
        {
            WorkflowId = workflowId,
            StepId = stepId,
            Kind = kind,
            State = kind == TaskEventKind.Cancelled ? TaskState.Cancelled : record.State,
            TaskId = taskId,
            Task = record.Task,
            Queue = record.Queue,
            Attempt = record.Attempts,
            At = time.GetUtcNow(),
            Origin = status.WorkerId,
        });
    }

    public Task<TaskRecord?> GetAsync(Guid taskId, CancellationToken cancellationToken = default) =>
        backend.Store.GetAsync(taskId, cancellationToken);
}
