using Microsoft.Extensions.Logging;

namespace Conveyor;

/// <summary>
/// Logs each attempt: its start, success and snooze at Debug, a failure at Warning with the exception, a retry the
/// handler asked for (<see cref="RetryTaskException"/>), a cancellation or time limit at Information — each line with the task id, name, queue, attempt, worker and, at the end, the duration.
/// Registered first by <c>AddConveyor</c> (the outermost middleware) unless <see cref="ConveyorOptions.LogTasks"/> is
/// false. At Information level and above an attempt that succeeds costs one level check and no allocation.
/// </summary>
internal sealed partial class TaskLoggingMiddleware(ILogger<TaskLoggingMiddleware> logger) : ITaskMiddleware
{
    public ValueTask InvokeAsync(TaskExecutionContext context, TaskExecutionDelegate next)
    {
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
            return inner;
        }
        return AwaitAsync(inner, context, debug);
    }

    private async ValueTask AwaitAsync(ValueTask inner, TaskExecutionContext context, bool debug)
    {
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
