using System.Diagnostics;
using Conveyor.Backends;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor;

/// <summary>
/// Leader-only: deletes finished workflows older than <see cref="WorkflowOptions.Retention"/> with their steps (a batch a
/// pass), audit entries older than <see cref="AuditOptions.Retention"/>, and tasks that finished more than
/// <see cref="SchedulerOptions.Retention"/> ago, in batches of
/// <see cref="SchedulerOptions.RetentionBatchSize"/>. It keeps deleting while batches come back full, so that it keeps
/// pace with any completion rate, but a pass ends after <see cref="SchedulerOptions.RetentionPassLimit"/> and the next
/// begins after a short pause (so a backlog does not hold the backend's writer for long); when a batch comes back short,
/// the next pass is <see cref="SchedulerOptions.RetentionInterval"/> later.
/// </summary>
internal sealed partial class RetentionCleaner(
    IConveyorBackend backend,
    IOptions<ConveyorOptions> options,
    ILeadership leadership,
    TimeProvider time,
    ILogger<RetentionCleaner> logger) : LeaderOnlyService(leadership, time, logger)
{
    /// <summary>The pause between passes while a backlog remains.</summary>
    internal static readonly TimeSpan BacklogPause = TimeSpan.FromMilliseconds(200);

    private readonly TimeProvider _time = time;

    protected override string Name => "retention";

    protected override async Task<TimeSpan> RunOnceAsync(CancellationToken leading)
    {
        var settings = options.Value.Scheduler;
        var batch = Math.Max(1, settings.RetentionBatchSize);
        var now = _time.GetUtcNow();
        var before = now - settings.Retention;
        var started = Stopwatch.GetTimestamp();
        var deleted = 0L;
        try
        {
            // Audit entries first, one batch a pass: few compared with tasks, and never held back by a task backlog.
            if (backend.Audit is { } audit)
            {
                var entries = await audit.DeleteAuditBeforeAsync(now - options.Value.Audit.Retention, batch, leading).ConfigureAwait(false);
                if (entries > 0)
                {
                    LogAuditDeleted(entries);
                }
            }
            // Finished workflows (with their steps' tasks and graphs) next, one batch a pass: a workflow is many rows.
            if (backend.Workflows is { } workflows)
            {
                var gone = await workflows.PurgeFinishedWorkflowsAsync(now - options.Value.Workflows.Retention, WorkflowBatch(batch), leading)
                    .ConfigureAwait(false);
                if (gone > 0)
                {
                    LogWorkflowsDeleted(gone);
                }
            }
            while (true)
            {
                var count = await backend.Store.PurgeFinishedAsync(before, batch, leading).ConfigureAwait(false);
                deleted += count;
                if (count < batch)
                {
                    return settings.RetentionInterval;
                }
                if (Stopwatch.GetElapsedTime(started) >= settings.RetentionPassLimit)
                {
                    return BacklogPause;
                }
            }
        }
        finally
        {
            if (deleted > 0)
            {
                LogDeleted(deleted, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            }
        }
    }

    [LoggerMessage(24, LogLevel.Information, "Retention deleted {Count} finished tasks in {DurationMs:F0} ms")]
    private partial void LogDeleted(long count, double durationMs);

    /// <summary>Workflows deleted per pass: each brings its steps, so a tenth of the task batch (at least 1, at most 500).</summary>
    internal static int WorkflowBatch(int taskBatch) => Math.Clamp(taskBatch / 10, 1, 500);

    [LoggerMessage(73, LogLevel.Information, "Retention deleted {Count} finished workflows with their steps")]
    private partial void LogWorkflowsDeleted(int count);

    [LoggerMessage(72, LogLevel.Information, "Retention deleted {Count} audit entries")]
    private partial void LogAuditDeleted(int count);
}
