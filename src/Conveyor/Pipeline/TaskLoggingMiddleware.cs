using Microsoft.Extensions.Logging;

namespace Conveyor;

/// <summary>
/// Logs each attempt: its start, success and snooze at Debug, a failure at Warning with the exception, a retry the
/// handler asked for (<see cref="RetryTaskException"/>), a cancellation or time limit at Information — each line with the task id, name, queue, attempt, worker and, at the end, the duration.
/// Registered first by <c>AddConveyor</c> (the outermost middleware) unless <see cref="ConveyorOptions.LogTasks"/> is
/// false. Every line logged during an attempt — these and the handler's own — carries a scope with the task id, name,
/// queue, attempt and trace id (<see cref="TaskLogScope"/>; JSON logs show it in <c>Scopes</c>). At Information level and
/// above an attempt that succeeds costs one level check and its scope.
/// </summary>
internal sealed partial class TaskLoggingMiddleware(ILogger<TaskLoggingMiddleware> logger) : ITaskMiddleware
{
    public ValueTask InvokeAsync(TaskExecutionContext context, TaskExecutionDelegate next)
    {
        var scope = logger.BeginScope(new TaskLogScope(context.Message, context.Attempt, System.Diagnostics.Activity.Current));
        var debug = logger.IsEnabled(LogLevel.Debug);
        if (debug)
        {
            var message = context.Message;
            LogStarted(message.Id, message.Task, message.Queue, context.Attempt, context.WorkerId);
        }
        ValueTask inner;
        try
        {
            inner = next(context);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            inner = ValueTask.FromException(ex);
        }
        if (inner.IsCompletedSuccessfully && !debug)
        {
            scope?.Dispose();
            return inner;
        }
        return AwaitAsync(inner, context, debug, scope);
    }

    private async ValueTask AwaitAsync(ValueTask inner, TaskExecutionContext context, bool debug, IDisposable? scope)
    {
        using var attemptScope = scope;
        var message = context.Message;
        try
        {
            await inner.ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            LogStopped(message.Id, message.Task, message.Queue, context.Attempt, context.WorkerId, context.Elapsed.TotalMilliseconds);
            throw;
        }
        catch (SnoozeTaskException ex)
        {
            // Not a failure: the handler put the task back for later.
            LogSnoozed(message.Id, message.Task, message.Queue, context.Attempt, context.WorkerId, ex.Delay, context.Elapsed.TotalMilliseconds);
            throw;
        }
        catch (RetryTaskException ex)
        {
            LogRetryAsked(ex.InnerException ?? ex, message.Id, message.Task, message.Queue, context.Attempt, context.WorkerId, context.Elapsed.TotalMilliseconds);
            throw;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogFailed(ex, message.Id, message.Task, message.Queue, context.Attempt, context.WorkerId, context.Elapsed.TotalMilliseconds);
            throw;
        }
        if (debug)
        {
            LogSucceeded(message.Id, message.Task, message.Queue, context.Attempt, context.WorkerId, context.Elapsed.TotalMilliseconds);
        }
    }

    [LoggerMessage(40, LogLevel.Debug, "Task {TaskId} {Task} on {Queue} started attempt {Attempt} on {WorkerId}")]
    private partial void LogStarted(Guid taskId, string task, string queue, int attempt, string workerId);

    [LoggerMessage(41, LogLevel.Debug, "Task {TaskId} {Task} on {Queue} succeeded attempt {Attempt} on {WorkerId} in {DurationMs:F1} ms")]
    private partial void LogSucceeded(Guid taskId, string task, string queue, int attempt, string workerId, double durationMs);

    [LoggerMessage(42, LogLevel.Warning, "Task {TaskId} {Task} on {Queue} failed attempt {Attempt} on {WorkerId} after {DurationMs:F1} ms")]
    private partial void LogFailed(Exception exception, Guid taskId, string task, string queue, int attempt, string workerId, double durationMs);

    [LoggerMessage(44, LogLevel.Debug, "Task {TaskId} {Task} on {Queue} snoozed in attempt {Attempt} on {WorkerId} for {Delay} after {DurationMs:F1} ms (no attempt spent)")]
    private partial void LogSnoozed(Guid taskId, string task, string queue, int attempt, string workerId, TimeSpan delay, double durationMs);

    [LoggerMessage(45, LogLevel.Information, "Task {TaskId} {Task} on {Queue} asked for a retry in attempt {Attempt} on {WorkerId} after {DurationMs:F1} ms")]
    private partial void LogRetryAsked(Exception exception, Guid taskId, string task, string queue, int attempt, string workerId, double durationMs);

    [LoggerMessage(43, LogLevel.Information, "Task {TaskId} {Task} on {Queue} stopped in attempt {Attempt} on {WorkerId} after {DurationMs:F1} ms (cancelled, time limit or shutdown)")]
    private partial void LogStopped(Guid taskId, string task, string queue, int attempt, string workerId, double durationMs);
}

/// <summary>The logging scope of an attempt: <c>TaskId</c>, <c>Task</c>, <c>Queue</c>, <c>Attempt</c> and, when the attempt
/// runs in a trace, <c>TraceId</c>. Its values are formatted only when a logger writes scopes.</summary>
internal sealed class TaskLogScope(TaskMessage message, int attempt, System.Diagnostics.Activity? activity) : IReadOnlyList<KeyValuePair<string, object?>>
{
    public int Count => activity is null ? 4 : 5;

    public KeyValuePair<string, object?> this[int index] => index switch
    {
        0 => new("TaskId", message.Id),
        1 => new("Task", message.Task),
        2 => new("Queue", message.Queue),
        3 => new("Attempt", attempt),
        4 when activity is not null => new("TraceId", activity.TraceId.ToHexString()),
        _ => throw new ArgumentOutOfRangeException(nameof(index)),
    };

    public IEnumerator<KeyValuePair<string, object?>> GetEnumerator()
    {
        for (var i = 0; i < Count; i++)
        {
            yield return this[i];
        }
    }

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

    public override string ToString() => $"Task {message.Id} {message.Task} on {message.Queue}, attempt {attempt}";
}
