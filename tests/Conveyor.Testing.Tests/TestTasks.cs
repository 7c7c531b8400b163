using System.Collections.Concurrent;

namespace Conveyor.Testing.Tests;

/// <summary>What the handlers of these tests saw, shared with the test (a singleton).</summary>
internal sealed class Journal
{
    private readonly ConcurrentQueue<string> _entries = new();

    public IReadOnlyList<string> Entries => [.. _entries];

    public void Add(string entry) => _entries.Enqueue(entry);
}

/// <summary>Scoped: one per attempt; records its own id, so tests see each attempt got its own scope.</summary>
internal sealed class AttemptScope : IDisposable
{
    public Guid Id { get; } = Guid.NewGuid();

    public bool Disposed { get; private set; }

    public void Dispose() => Disposed = true;
}

internal sealed record FlightArgs(int FlightId, string? Route = null);

internal sealed class ScoreFlight(Journal journal, AttemptScope scope) : ITaskHandler<FlightArgs, double>
{
    public const string Name = "flights.score";

    public Task<double> HandleAsync(FlightArgs args, TaskContext context, CancellationToken cancellationToken)
    {
        journal.Add($"score {args.FlightId} attempt {context.Attempt} scope {scope.Id}");
        return Task.FromResult(0.97);
    }
}

/// <summary>Fails every attempt.</summary>
internal sealed class BrokenTask(Journal journal) : ITaskHandler<NoArgs>
{
    public const string Name = "test.broken";

    public Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken)
    {
        journal.Add($"broken attempt {context.Attempt}");
        throw new InvalidOperationException($"attempt {context.Attempt} failed");
    }
}

/// <summary>Fails its first attempt, succeeds at the second.</summary>
internal sealed class FlakyTask(Journal journal) : ITaskHandler<NoArgs, string>
{
    public const string Name = "test.flaky";

    public Task<string> HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken)
    {
        journal.Add($"flaky attempt {context.Attempt}");
        return context.Attempt == 1 ? throw new TimeoutException("upstream timed out") : Task.FromResult("ok");
    }
}

/// <summary>Enqueues a score for each flight of its batch, as a fan-out task does.</summary>
internal sealed class ImportFlights(ITaskClient client, Journal journal) : ITaskHandler<int[]>
{
    public const string Name = "flights.import";

    public async Task HandleAsync(int[] args, TaskContext context, CancellationToken cancellationToken)
    {
        journal.Add("import");
        foreach (var flight in args)
        {
            await client.EnqueueAsync(ScoreFlight.Name, new FlightArgs(flight), cancellationToken: cancellationToken);
        }
        journal.Add("import done");
    }
}

/// <summary>Snoozes on its first two runs, then succeeds: a task that waits for something to be ready.</summary>
internal sealed class WaitingTask(Journal journal) : ITaskHandler<NoArgs>
{
    public const string Name = "test.waiting";

    public Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken)
    {
        journal.Add($"waiting attempt {context.Attempt}");
        return journal.Entries.Count(e => e.StartsWith("waiting", StringComparison.Ordinal)) <= 2
            ? throw new SnoozeTaskException(TimeSpan.FromMinutes(1))
            : Task.CompletedTask;
    }
}
