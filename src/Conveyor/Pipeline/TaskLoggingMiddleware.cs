using Microsoft.Extensions.Logging;

namespace Conveyor;

/// <summary>
/// Logs each attempt: its start and success at Debug, a failure at Warning with the exception, a cancellation or time
/// limit at Information — each line with the task id, name, queue, attempt, worker and, at the end, the duration.
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

    [LoggerMessage(43, LogLevel.Information, "Task {TaskId} {Task} on {Queue} stopped in attempt {Attempt} on {WorkerId} after {DurationMs:F1} ms (cancelled, time limit or shutdown)")]
    private partial void LogStopped(Guid taskId, string task, string queue, int attempt, string workerId, double durationMs);
}
