using System.Diagnostics;
using Conveyor.Backends;
using Conveyor.Bench.Infrastructure;
using Conveyor.Bench.Results;
using Conveyor.Bench.Systems;

namespace Conveyor.Bench.Workloads;

/// <summary>
/// The task list's filters over a large store (issue 13's target: ≤ 100 ms server-side over 1,000,000 stored tasks on
/// SQLite and PostgreSQL). <c>--tasks</c> tasks are stored first (not timed), as a store that keeps finished tasks for a
/// few days holds them: 2 % in queue <c>parked</c> that no worker consumes, named <c>report.nightly</c> and stored first
/// (the oldest: a newest-first listing reaches them last), half of them then cancelled; the other 98 % no-op tasks in the
/// default queue, run to <c>succeeded</c>. The table's analyzer then runs. Each filter is then asked
/// <see cref="Repetitions"/> times for its first page of 100 (the API's default) and the median is reported: the time of
/// the store's <see cref="ITaskStore.ListAsync"/>, which is all the server does for a list but JSON writing.
/// </summary>
internal sealed class ListWorkload(BenchBackend backend = BenchBackend.Sqlite) : IWorkload
{
    private const int Repetitions = 21;
    private const int PageSize = 100;
    private const string ParkedQueue = "parked";
    private const string ParkedTask = "report.nightly";
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(20);

    public string Name => "list";

    public string Title => "Task list filters over a large store" + Variants.TitleSuffix(backend);

    public string Note => $"--tasks stored first (2 % in queue '{ParkedQueue}', task '{ParkedTask}', the oldest, half of them cancelled; 98 % no-op tasks run to succeeded), " +
        $"then each filter's first page of {PageSize} asked {Repetitions} times: the median of the store's ListAsync, in ms. Use --runs 1 with -n 1000000.";

    public IEnumerable<BenchCase> Cases(BenchSettings settings)
    {
        var target = backend == BenchBackend.Sqlite ? new StoreTarget(BenchBackend.Sqlite, settings.Synchronous[0]) : new StoreTarget(backend);
        yield return new BenchCase(new CaseKey(Name, BenchSystem.Conveyor, target.ConveyorVariant), (s, ct) => RunAsync(s, target, ct)) { Warmup = false };
    }

    private static async Task<IReadOnlyList<Metric>> RunAsync(BenchSettings s, StoreTarget target, CancellationToken ct)
    {
        await using var store = target.OpenConveyor("list", s);
        var parked = Math.Max(2, s.Tasks / 50);
        var plain = s.Tasks - parked;
        var seeding = Stopwatch.StartNew();
        await using (var producer = await ConveyorInstance.StartAsync(store.Use, runWorker: false, s.Workers, null, ct))
        {
            var parkedRequest = new TaskRequest(ParkedTask, """{"tenant":"acme","day":"2026-12-01"}""", new EnqueueOptions { Queue = ParkedQueue });
            var ids = new List<Guid>(parked);
            for (var n = 0; n < parked; n += s.BatchSize)
            {
                var results = await producer.Client.EnqueueManyAsync([.. Enumerable.Repeat(parkedRequest, Math.Min(s.BatchSize, parked - n))], ct);
                ids.AddRange(results.Select(r => r.Id));
            }
            // Every other parked task cancelled: a rare finished state among the oldest rows.
            for (var i = 0; i < ids.Count; i += 2)
            {
                await producer.Client.CancelAsync(ids[i], ct);
            }
            var batch = Enumerable.Repeat(new TaskRequest(NoopTask.Name), s.BatchSize).ToArray();
            for (var n = 0; n < plain; n += s.BatchSize)
            {
                var size = Math.Min(s.BatchSize, plain - n);
                await producer.Client.EnqueueManyAsync(size == batch.Length ? batch : batch[..size], ct);
            }
        }
        await using (var worker = await ConveyorInstance.StartAsync(store.Use, runWorker: true, s.Workers, null, ct, s.Prefetch))
        {
            var timeout = TimeSpan.FromMinutes(5) + TimeSpan.FromMilliseconds(plain);
            await Wait.UntilAsync(async () => await worker.CountAsync(TaskState.Succeeded, ct) >= plain, PollInterval, timeout,
                $"the worker to run {plain:N0} no-op tasks", ct);
        }
        await store.AnalyzeAsync(ct);
        BenchRunner.Log($"  stored {s.Tasks:N0} tasks in {seeding.Elapsed.TotalSeconds:0} s");

        await using var reader = await ConveyorInstance.StartAsync(store.Use, runWorker: false, s.Workers, null, ct);
        var firstPage = await reader.Store.ListAsync(new TaskQuery { Limit = PageSize }, ct);
        var cancelledPage = await reader.Store.ListAsync(new TaskQuery { State = TaskState.Cancelled, Limit = PageSize }, ct);
        (string Name, TaskQuery Query)[] filters =
        [
            ("no filter", new TaskQuery()),
            ("no filter, page 2", new TaskQuery { Cursor = firstPage.NextCursor }),
            ("state=succeeded (98 %)", new TaskQuery { State = TaskState.Succeeded }),
            ("state=queued (1 %, oldest)", new TaskQuery { State = TaskState.Queued }),
            ("state=cancelled (1 %, oldest)", new TaskQuery { State = TaskState.Cancelled }),
            ("state=cancelled, page 2", new TaskQuery { State = TaskState.Cancelled, Cursor = cancelledPage.NextCursor }),
            ("state=dead (none)", new TaskQuery { State = TaskState.Dead }),
            ($"queue={ParkedQueue} (2 %, oldest)", new TaskQuery { Queue = ParkedQueue }),
            ($"task={ParkedTask} (2 %, oldest)", new TaskQuery { Task = ParkedTask }),
            ($"queue={ParkedQueue}, state=queued", new TaskQuery { Queue = ParkedQueue, State = TaskState.Queued }),
            ("task=unknown (none)", new TaskQuery { Task = "no.such.task" }),
        ];
        var asks = filters.Select(f => (f.Name, Ask: (Func<Task<int>>)(async () => (await reader.Store.ListAsync(f.Query with { Limit = PageSize }, ct)).Items.Count)))
            // The queues view and the overview: every queue's count per state (the finished ones up to the store's limit),
            // and the exact counts of every state (GET /api/v1/queues?exact=true: one grouping over the table).
            .Append(("queues, counts per state", async () => (await reader.Store.GetQueuesAsync(ct)).Count))
            .Append(("queues, exact counts per state", async () => (await reader.Store.GetQueuesAsync(int.MaxValue, ct)).Count));
        var metrics = new List<Metric>();
        foreach (var (name, ask) in asks)
        {
            var times = new List<double>(Repetitions);
            var count = 0;
            for (var i = 0; i < Repetitions; i++)
            {
                var start = Stopwatch.GetTimestamp();
                count = await ask();
                times.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
            }
            times.Sort();
            BenchRunner.Log($"  {name}: {count} rows, median {times[Repetitions / 2]:0.0} ms, max {times[^1]:0.0} ms");
            metrics.Add(new Metric($"{name}, over {s.Tasks:N0}", "ms", false, times[Repetitions / 2]));
        }
        return metrics;
    }
}
