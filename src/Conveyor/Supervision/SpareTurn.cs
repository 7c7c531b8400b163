namespace Conveyor;

/// <summary>
/// A supervisor's spare child (<see cref="WorkerOptions.SpareProcess"/>): a worker process started ahead of need that
/// builds its host, opens its backend and starts its services, but neither fetches nor counts toward recycling until
/// its supervisor hands it the place of a child that recycled or exited. So a recycle costs the spare's first fetch
/// rather than a process's start (issue 10; docs/benchmarks.md, "Recycling against starting"). The supervisor sets
/// <see cref="Variable"/> in the spare's environment and writes a byte to its standard input to hand it its turn; the end
/// of that input, as for any child, asks it to stop (<see cref="WorkerProcessSignals"/>).
/// </summary>
internal static class SpareTurn
{
    /// <summary>Set (to 1) in a spare child's environment.</summary>
    public const string Variable = "CONVEYOR_SUPERVISOR_SPARE";

    private static readonly TaskCompletionSource Turn = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Whether this process was started as a spare (whether or not its turn came since).</summary>
    public static bool IsSpare { get; } = ConveyorSupervisor.IsChildProcess && Environment.GetEnvironmentVariable(Variable) == "1";

    /// <summary>Completes at once outside a spare; in a spare, when its turn comes. Throws
    /// <see cref="OperationCanceledException"/> when <paramref name="cancellationToken"/> ends the wait first.</summary>
    public static Task WaitAsync(CancellationToken cancellationToken) =>
        IsSpare ? Turn.Task.WaitAsync(cancellationToken) : Task.CompletedTask;

    /// <summary>The supervisor handed this spare a place: it starts to work.</summary>
    public static void Begin() => Turn.TrySetResult();
}
