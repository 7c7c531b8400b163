namespace Conveyor;

/// <summary>Arguments of <c>conveyor.sleep</c>.</summary>
/// <param name="Ms">How long to sleep, in milliseconds.</param>
/// <param name="IgnoreCancellation">When true the handler does not stop when its token is cancelled (a soft time
/// limit, a cancel, the end of the shutdown grace): it stands for task code that hangs, for testing hard time limits.</param>
public sealed record SleepArgs(int Ms, bool IgnoreCancellation = false);

/// <summary><c>conveyor.sleep</c>: sleeps <see cref="SleepArgs.Ms"/> milliseconds and succeeds; for tests and
/// diagnostics (time limits, drains, lease handling). Arguments <c>{"ms": 500, "ignoreCancellation": false}</c>.</summary>
public sealed class SleepTask : ITaskHandler<SleepArgs>
{
    /// <summary>The task's name.</summary>
    public const string Name = "conveyor.sleep";

    /// <inheritdoc />
    public Task HandleAsync(SleepArgs args, TaskContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(args);
        if (args.Ms < 0)
        {
            throw new PermanentTaskException($"ms must be 0 or more, not {args.Ms}.");
        }
        return Task.Delay(TimeSpan.FromMilliseconds(args.Ms), args.IgnoreCancellation ? CancellationToken.None : cancellationToken);
    }
}
