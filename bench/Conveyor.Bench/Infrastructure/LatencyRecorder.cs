using System.Diagnostics;

namespace Conveyor.Bench.Infrastructure;

/// <summary>Collects enqueue-to-start samples (Stopwatch ticks) from handlers on any thread.</summary>
internal sealed class LatencyRecorder
{
    private readonly Lock _lock = new();
    private List<long> _samples = [];
    private bool _recording;

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _samples.Count;
            }
        }
    }

    /// <summary>Any samples recorded so far (warm-up) are dropped; samples from now on are kept.</summary>
    public void Start()
    {
        lock (_lock)
        {
            _samples = [];
            _recording = true;
        }
    }

    /// <summary>Records the start of a task sent at <paramref name="sentTimestamp"/> (a <see cref="Stopwatch"/> timestamp).</summary>
    public void Record(long sentTimestamp, bool measured)
    {
        var now = Stopwatch.GetTimestamp();
        if (!measured)
        {
            return;
        }
        lock (_lock)
        {
            if (_recording)
            {
                _samples.Add(now - sentTimestamp);
            }
        }
    }

    public IReadOnlyList<double> SamplesInMilliseconds()
    {
        lock (_lock)
        {
            return _samples.Select(t => t * 1000.0 / Stopwatch.Frequency).ToList();
        }
    }
}
