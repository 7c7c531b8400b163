using System.Collections.Concurrent;
using System.Threading.Channels;
using Conveyor.Backends;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conveyor.Workflows;

/// <summary>
/// Raises <see cref="WorkflowEventKind.Succeeded"/> and <see cref="WorkflowEventKind.Failed"/>. A workflow ends inside the
/// transaction or script that ends its last step (docs/workflows.md), which raises no event of its own; so while workflow
/// events are watched, each step end this process raises (<see cref="TaskEventBus.StepEnded"/>) has its workflow's state
/// read here, off the worker's path, and an ended workflow is announced with its stored end time. Step ends of one
/// workflow that arrive while a read is under way make one read; reads are paced at most one round per
/// <see cref="RoundInterval"/>. A workflow whose end is seen again (a step that ran on after a failure) is announced again,
/// and the bus drops the repeat, as it drops the same end raised by another process.
/// </summary>
internal sealed partial class WorkflowEndProbe(IConveyorBackend backend, TaskEventBus bus, WorkerStatus status, ILogger<WorkflowEndProbe> logger)
    : BackgroundService
{
    /// <summary>Least time between two rounds of reads: a chord of thousands of members makes a few reads a second, not
    /// one per member.</summary>
    internal static readonly TimeSpan RoundInterval = TimeSpan.FromMilliseconds(20);

    /// <summary>Most workflows waiting for a read; the ends of more are not announced (logged).</summary>
    internal const int MaxPending = 10_000;

    private readonly ConcurrentDictionary<Guid, byte> _pending = new();
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private bool _failing;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // The host cancels this token on its own thread: the calls under way must not end there (DetachedCancellation).
        using var detached = DetachedCancellation.LinkTo(stoppingToken);
        stoppingToken = detached.Token;
        if (backend.Workflows is not { } store)
        {
            return;
        }
        bus.StepEnded = OnStepEnded;
        try
        {
            while (await _wake.Reader.WaitToReadAsync(stoppingToken).ConfigureAwait(false))
            {
                _wake.Reader.TryRead(out _);
                foreach (var workflowId in _pending.Keys)
                {
                    _pending.TryRemove(workflowId, out _);
                    await AnnounceIfEndedAsync(store, workflowId, stoppingToken).ConfigureAwait(false);
                }
                await Task.Delay(RoundInterval, stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            bus.StepEnded = null;
        }
    }

    private void OnStepEnded(Guid workflowId)
    {
        if (!bus.IsWorkflowObserved)
        {
            return;
        }
        if (_pending.Count >= MaxPending && !_pending.ContainsKey(workflowId))
        {
            LogTooMany(MaxPending);
            return;
        }
        _pending.TryAdd(workflowId, 0);
        _wake.Writer.TryWrite(true);
    }

    private async Task AnnounceIfEndedAsync(IWorkflowStore store, Guid workflowId, CancellationToken stoppingToken)
    {
        WorkflowSummary? summary;
        try
        {
            summary = await store.GetWorkflowSummaryAsync(workflowId, stoppingToken).WaitAsync(stoppingToken).ConfigureAwait(false);
            _failing = false;
        }
        catch (Exception ex) when (ex is not OperationCanceledException && ex is not OutOfMemoryException)
        {
            if (!_failing)
            {
                _failing = true;
                LogReadFailed(ex, workflowId);
            }
            return;
        }
        if (summary is { State: WorkflowState.Succeeded or WorkflowState.Failed, FinishedAt: { } finishedAt })
        {
            bus.PublishWorkflow(new WorkflowEvent
            {
                Kind = summary.State == WorkflowState.Succeeded ? WorkflowEventKind.Succeeded : WorkflowEventKind.Failed,
                WorkflowId = workflowId,
                Name = summary.Name,
                State = summary.State,
                At = finishedAt,
                Origin = status.WorkerId,
            });
        }
    }

    [LoggerMessage(1, LogLevel.Warning, "Reading workflow {WorkflowId}'s state for its events failed; workflow ends are not announced until a read works")]
    private partial void LogReadFailed(Exception exception, Guid workflowId);

    [LoggerMessage(2, LogLevel.Warning, "More than {MaxPending} workflows wait for a read of their state; the ends of others are not announced")]
    private partial void LogTooMany(int maxPending);
}
