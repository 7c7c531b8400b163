using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Tests.Engine;

/// <summary>The <c>Conveyor</c> meter recorded from task events (or, with only the metrics listening, without building
/// them), seen by a <see cref="MeterListener"/>: nothing is recorded until a listener enables its instruments.</summary>
public sealed class MetricsEngineTests
{
    [Fact]
    public async Task Instruments_record_enqueues_attempts_outcomes_and_the_backends_counts_once_listened_to()
    {
        await using var host = new EngineHost(c =>
        {
            c.AddTask<NoopTask>(NoopTask.Name);
            c.AddTask<PermanentlyFailingTask>(PermanentlyFailingTask.Name);
        }, o => o.MetricsRefreshInterval = TimeSpan.FromMilliseconds(100));
        var bus = host.Services.GetRequiredService<TaskEventBus>();
        // No observer, no subscriber, no listener: events are not even built.
        Assert.False(bus.IsObserved);

        var factory = host.Services.GetRequiredService<IMeterFactory>();
        var longs = new ConcurrentQueue<(string Name, long Value, Dictionary<string, object?> Tags)>();
        var doubles = new ConcurrentQueue<(string Name, double Value, Dictionary<string, object?> Tags)>();
        using var listener = new MeterListener
        {
            // This host's meter only: other tests' hosts run in parallel with meters of the same name.
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == ConveyorDiagnostics.Name && ReferenceEquals(instrument.Meter.Scope, factory))
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<long>((i, v, tags, _) => longs.Enqueue((i.Name, v, Tags(tags))));
        listener.SetMeasurementEventCallback<int>((i, v, tags, _) => longs.Enqueue((i.Name, v, Tags(tags))));
        listener.SetMeasurementEventCallback<double>((i, v, tags, _) => doubles.Enqueue((i.Name, v, Tags(tags))));
        listener.Start();
        await host.StartAsync();
        Assert.True(bus.IsObserved);

        var ok = await host.Client.EnqueueAsync(NoopTask.Name);
        var bad = await host.Client.EnqueueAsync(PermanentlyFailingTask.Name);
        await host.WaitForStateAsync(ok.Id, TaskState.Succeeded);
        await host.WaitForStateAsync(bad.Id, TaskState.Dead);
        // The task counters are observable: each collection reports their totals, reading them one at a time. The worker
        // records an outcome once its write to the store returns, after the state waited for above shows: so the
        // collections are repeated until one reading holds every count and the histograms every measurement (the
        // counters only go up), and the assertions below read that one (or, past the deadline, the last: they then say
        // what is missing).
        var reading = Array.Empty<(string Name, long Value, Dictionary<string, object?> Tags)>();
        void Collect()
        {
            longs.Clear();
            listener.RecordObservableInstruments();
            reading = [.. longs];
        }
        bool Settled() =>
            Sum(reading, ConveyorMetricNames.TasksEnqueued) >= 2
            && Sum(reading, ConveyorMetricNames.TasksStarted) >= 2
            && Sum(reading, ConveyorMetricNames.TasksSucceeded) >= 1
            && Sum(reading, ConveyorMetricNames.TasksFailed) >= 1
            && Sum(reading, ConveyorMetricNames.TasksDead) >= 1
            && doubles.Count(d => d.Name == ConveyorMetricNames.TaskDuration) >= 2
            && doubles.Count(d => d.Name == ConveyorMetricNames.TaskQueueWait) >= 2;
        var deadline = DateTime.UtcNow.AddSeconds(20);
        for (Collect(); !Settled() && DateTime.UtcNow < deadline; Collect())
        {
            await Task.Delay(10);
        }

        Assert.Equal(2, Sum(reading, ConveyorMetricNames.TasksEnqueued));
        Assert.Equal(2, Sum(reading, ConveyorMetricNames.TasksStarted));
        Assert.Equal(1, Sum(reading, ConveyorMetricNames.TasksSucceeded, ("task", NoopTask.Name)));
        Assert.Equal(1, Sum(reading, ConveyorMetricNames.TasksFailed, ("task", PermanentlyFailingTask.Name), ("queue", "default")));
        Assert.Equal(1, Sum(reading, ConveyorMetricNames.TasksDead, ("task", PermanentlyFailingTask.Name)));
        Assert.Equal(0, Sum(reading, ConveyorMetricNames.TasksRetried));
        Assert.Single(doubles, d => d.Name == ConveyorMetricNames.TaskDuration && (string?)d.Tags["outcome"] == "succeeded");
        Assert.Single(doubles, d => d.Name == ConveyorMetricNames.TaskDuration && (string?)d.Tags["outcome"] == "failed");
        Assert.Equal(2, doubles.Count(d => d.Name == ConveyorMetricNames.TaskQueueWait && d.Value >= 0));
        Assert.Contains(doubles, d => d.Name == ConveyorMetricNames.BackendDuration && (string?)d.Tags["operation"] == "enqueue");

        // The gauges read the backend when collected, from a snapshot refreshed in the background (a collection waits
        // for a refresh only so long, then answers the last snapshot): repeated until a reading shows the store as it is.
        bool Counted() =>
            Sum(reading, ConveyorMetricNames.QueueDepth, ("queue", "default"), ("state", "succeeded")) == 1
            && Sum(reading, ConveyorMetricNames.QueueDepth, ("queue", "default"), ("state", "dead")) == 1
            && Sum(reading, ConveyorMetricNames.WorkersAlive) == 1;
        deadline = DateTime.UtcNow.AddSeconds(20);
        for (Collect(); !Counted() && DateTime.UtcNow < deadline; Collect())
        {
            await Task.Delay(10);
        }
        Assert.Equal(1, Sum(reading, ConveyorMetricNames.QueueDepth, ("queue", "default"), ("state", "succeeded")));
        Assert.Equal(1, Sum(reading, ConveyorMetricNames.QueueDepth, ("queue", "default"), ("state", "dead")));
        Assert.Equal(0, Sum(reading, ConveyorMetricNames.QueueDepth, ("queue", "default"), ("state", "queued")));
        Assert.Equal(1, Sum(reading, ConveyorMetricNames.WorkersAlive));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_refresh_that_finds_the_services_disposed_logs_no_warning_and_one_that_finds_the_backend_disposed_does(bool servicesDisposed)
    {
        // The first: what a meter provider's last collection does at the host's disposal (the gauges ask for a refresh,
        // whose backend the disposed services no longer give); nothing failed. The second: a backend disposed while the
        // host runs, which is a failure.
        var logs = new CapturingLoggerProvider();
        using var meters = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var factory = meters.GetRequiredService<IMeterFactory>();
        await using var services = new ServiceCollection()
            .AddSingleton<Backends.IConveyorBackend>(_ => throw new ObjectDisposedException("SqliteWriter"))
            .BuildServiceProvider();
        if (servicesDisposed)
        {
            await services.DisposeAsync();
        }
        using var metrics = new ConveyorMetrics(factory, services, new ConveyorOptions(), TimeProvider.System, logs.CreateLogger("metrics"));
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (ReferenceEquals(instrument.Meter.Scope, factory))
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.Start();

        listener.RecordObservableInstruments();
        // The collection waits for the refresh only so long: the refresh is waited for here, to its end.
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (metrics.SnapshotAt == DateTimeOffset.MinValue && DateTime.UtcNow < deadline)
        {
            await Task.Delay(10);
        }

        Assert.NotEqual(DateTimeOffset.MinValue, metrics.SnapshotAt);
        var warnings = logs.Entries.Where(e => e.Level >= Microsoft.Extensions.Logging.LogLevel.Warning).ToList();
        if (servicesDisposed)
        {
            Assert.Empty(warnings);
        }
        else
        {
            Assert.IsType<ObjectDisposedException>(Assert.Single(warnings).Exception);
        }
    }

    private static Dictionary<string, object?> Tags(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var all = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var tag in tags)
        {
            all[tag.Key] = tag.Value;
        }
        return all;
    }

    private static long Sum(IEnumerable<(string Name, long Value, Dictionary<string, object?> Tags)> measurements, string name, params (string Key, string Value)[] tags) =>
        measurements.Where(m => m.Name == name && tags.All(t => m.Tags.TryGetValue(t.Key, out var v) && (string?)v == t.Value)).Sum(m => m.Value);
}
