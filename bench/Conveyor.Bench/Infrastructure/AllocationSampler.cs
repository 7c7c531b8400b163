using System.Collections.Concurrent;
using System.Diagnostics.Tracing;

namespace Conveyor.Bench.Infrastructure;

/// <summary>What a process allocates, by type, from the runtime's allocation ticks (one event each time a heap has
/// allocated about 100 KB more; its type is the object that crossed the mark, so counts are proportional samples).
/// <c>BENCH_ALLOC_TYPES=1</c> runs one over each Conveyor drain and logs the types that took the most.</summary>
internal sealed class AllocationSampler : EventListener
{
    private const EventKeywords GcKeyword = (EventKeywords)0x1;
    private readonly ConcurrentDictionary<string, long> _bytes = new(StringComparer.Ordinal);
    private volatile bool _recording;

    public static AllocationSampler? StartIfAsked() =>
        Environment.GetEnvironmentVariable("BENCH_ALLOC_TYPES") == "1" ? new AllocationSampler { _recording = true } : null;

    protected override void OnEventSourceCreated(EventSource eventSource)
    {
        if (eventSource.Name == "Microsoft-Windows-DotNETRuntime")
        {
            EnableEvents(eventSource, EventLevel.Verbose, GcKeyword);
        }
    }

    protected override void OnEventWritten(EventWrittenEventArgs eventData)
    {
        if (!_recording || eventData.EventName is not { } name || !name.StartsWith("GCAllocationTick", StringComparison.Ordinal) || eventData.PayloadNames is null)
        {
            return;
        }
        var typeIndex = eventData.PayloadNames.IndexOf("TypeName");
        var amountIndex = eventData.PayloadNames.IndexOf("AllocationAmount64");
        if (typeIndex < 0 || amountIndex < 0)
        {
            return;
        }
        var type = eventData.Payload![typeIndex] as string ?? "?";
        var amount = Convert.ToInt64(eventData.Payload[amountIndex], System.Globalization.CultureInfo.InvariantCulture);
        _bytes.AddOrUpdate(type, amount, (_, sum) => sum + amount);
    }

    /// <summary>Stops recording and logs the top types, as bytes per task.</summary>
    public void Report(long tasks, int top = 25)
    {
        _recording = false;
        var total = _bytes.Values.Sum();
        BenchRunner.Log($"allocation ticks by type ({total / (double)tasks:N0} B a task sampled):");
        foreach (var (type, bytes) in _bytes.OrderByDescending(e => e.Value).Take(top))
        {
            BenchRunner.Log($"  {bytes / (double)tasks,8:N1} B/task  {type}");
        }
        Dispose();
    }
}
