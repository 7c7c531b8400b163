using System.Diagnostics;
using Conveyor.Backends;
using Conveyor.Bench.Infrastructure;
using Conveyor.Bench.Results;
using Conveyor.Bench.Systems;
using Conveyor.Workflows;

namespace Conveyor.Bench.Workloads;

/// <summary>
/// Workflows (docs/workflows.md), against issue 12's targets: a chord of min(<c>--tasks</c>, 10,000) no-op tasks and
/// one callback, against as many plain no-op tasks drained the same way (target: the chord within 2 × the plain time);
/// and a chain of 1,000 no-op steps, each waiting for the one before (target on SQLite: ≥ 1,000 steps/s), which
/// measures the release path rather than the drain. The steps or tasks are stored first (not timed); the clock runs from
/// the worker's start until the store has the workflow (or every plain task) succeeded.
/// </summary>
internal sealed class WorkflowWorkload(BenchBackend backend = BenchBackend.Sqlite) : IWorkload
{
    private const int ChainSteps = 1_000;
    private const int MaxChord = 10_000;
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(5);

    public string Name => "workflow";

    public string Title => "Workflows: chord against plain tasks, and a chain" + Variants.TitleSuffix(backend);

    public string Note => "Chord and plain: min(--tasks, 10,000) no-op tasks, stored first, then a worker with --workers handlers is started; " +
        "timed until the store has the chord's workflow (or every plain task) succeeded. Chain: 1,000 steps, each waiting for the one before.";

    public IEnumerable<BenchCase> Cases(BenchSettings settings)
    {
        var target = backend == BenchBackend.Sqlite ? new StoreTarget(BenchBackend.Sqlite, settings.Synchronous[0]) : new StoreTarget(backend);
        yield return new BenchCase(new CaseKey(Name, BenchSystem.Conveyor, target.ConveyorVariant), (s, ct) => RunAsync(s, target, ct));
    }

    private static async Task<IReadOnlyList<Metric>> RunAsync(BenchSettings s, StoreTarget target, CancellationToken ct)
    {
        var n = Math.Min(s.Tasks, MaxChord);
        var plain = await TimeAsync(s, target, "wf-plain", n, async producer =>
        {
            for (var i = 0; i < n; i += s.BatchSize)
            {
                await producer.Client.EnqueueManyAsync([.. Enumerable.Repeat(new TaskRequest(NoopTask.Name), Math.Min(s.BatchSize, n - i))], ct);
            }
            return null;
        }, ct);
        var chord = await TimeAsync(s, target, "wf-chord", n + 1, async producer =>
            (await producer.Workflows.StartAsync(Workflow.Chord(Enumerable.Repeat(new TaskRequest(NoopTask.Name), n), new TaskRequest(NoopTask.Name)), ct)).Id, ct);
        var chain = await TimeAsync(s, target, "wf-chain", ChainSteps, async producer =>
            (await producer.Workflows.StartAsync(Workflow.Chain(Enumerable.Repeat(new TaskRequest(NoopTask.Name), ChainSteps)), ct)).Id, ct);
        return
        [
            new Metric($"{n:N0} plain tasks, {s.Workers} workers", "tasks/s", true, n / plain.TotalSeconds),
            new Metric($"chord of {n:N0} + callback, {s.Workers} workers", "tasks/s", true, (n + 1) / chord.TotalSeconds),
            new Metric("chord time ÷ plain time", "×", false, chord.TotalSeconds / plain.TotalSeconds),
            new Metric($"chain of {ChainSteps:N0} steps", "steps/s", true, ChainSteps / chain.TotalSeconds),
        ];
    }

    /// <summary>Stores the work with <paramref name="store"/> (a workflow's id, or null for plain tasks) from a host
    /// without a worker, then times a worker from its start until <paramref name="count"/> tasks (and the workflow) succeeded.</summary>
    private static async Task<TimeSpan> TimeAsync(BenchSettings s, StoreTarget target, string name, int count,
        Func<ConveyorInstance, Task<Guid?>> store, CancellationToken ct)
    {
        await using var data = target.OpenConveyor(name, s);
        Guid? workflowId;
        await using (var producer = await ConveyorInstance.StartAsync(data.Use, runWorker: false, s.Workers, null, ct))
        {
            workflowId = await store(producer);
        }
        var start = Stopwatch.GetTimestamp();
        await using var worker = await ConveyorInstance.StartAsync(data.Use, runWorker: true, s.Workers, null, ct, s.Prefetch);
        var timeout = TimeSpan.FromMinutes(2) + TimeSpan.FromMilliseconds(count);
        await Wait.UntilAsync(() => worker.Status.Succeeded >= count, PollInterval, timeout, $"the worker to run {count} tasks ({name})", ct);
        if (workflowId is { } id)
        {
            await Wait.UntilAsync(async () => (await worker.Backend.Workflows!.GetWorkflowAsync(id, ct))?.State == WorkflowState.Succeeded,
                PollInterval, timeout, $"the store to have the workflow succeeded ({name})", ct);
        }
        else
        {
            await Wait.UntilAsync(async () => await worker.CountAsync(TaskState.Succeeded, ct) >= count, PollInterval, timeout,
                $"the store to record every task succeeded ({name})", ct);
        }
        return Stopwatch.GetElapsedTime(start);
    }
}
