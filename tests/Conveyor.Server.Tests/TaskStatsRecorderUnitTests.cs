using Conveyor.AspNetCore;
using Conveyor.AspNetCore.Stats;
using Microsoft.Extensions.Options;

namespace Conveyor.Server.Tests;

/// <summary>The stats' queue waits when events arrive out of order: a worker's start can be published before the
/// enqueue that preceded it.</summary>
public sealed class TaskStatsRecorderUnitTests
{
    private static TaskEvent Event(TaskEventKind kind, Guid id, DateTimeOffset at) => new()
    {
        Kind = kind,
        State = kind == TaskEventKind.Started ? TaskState.Running : TaskState.Queued,
        TaskId = id,
        Task = "t",
        Queue = "q",
        At = at,
    };

    private static TaskStatsRecorder Recorder() =>
        new(new TaskEventBus([]), Options.Create(new ConveyorApiOptions()), TimeProvider.System);

    [Fact]
    public void A_start_seen_before_its_enqueue_is_timed_from_the_enqueue()
    {
        var recorder = Recorder();
        var now = DateTimeOffset.UtcNow;
        var early = Guid.NewGuid();
        var inOrder = Guid.NewGuid();
        recorder.Record(Event(TaskEventKind.Started, early, now.AddMilliseconds(30)));
        recorder.Record(Event(TaskEventKind.Enqueued, early, now));
        recorder.Record(Event(TaskEventKind.Enqueued, inOrder, now));
        recorder.Record(Event(TaskEventKind.Started, inOrder, now.AddMilliseconds(10)));

        var snapshot = recorder.Snapshot();
        Assert.Equal(2, snapshot.Buckets.Sum(b => b.WaitCount));
        Assert.Equal(30, snapshot.Buckets.Max(b => b.WaitMsMax ?? 0), 3);
        Assert.Equal(20, snapshot.Queues.Single(q => q.Queue == "q").WaitMsAvg!.Value, 3);
    }

    [Fact]
    public void A_start_whose_enqueue_never_comes_is_not_timed()
    {
        var recorder = Recorder();
        var now = DateTimeOffset.UtcNow;
        recorder.Record(Event(TaskEventKind.Started, Guid.NewGuid(), now));
        recorder.Record(Event(TaskEventKind.Enqueued, Guid.NewGuid(), now));

        Assert.Equal(0, recorder.Snapshot().Buckets.Sum(b => b.WaitCount));
    }
}
