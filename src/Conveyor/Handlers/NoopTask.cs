namespace Conveyor;

/// <summary><c>conveyor.noop</c>: does nothing and succeeds; for diagnostics and benchmarks. Any arguments are ignored.</summary>
public sealed class NoopTask : ITaskHandler<NoArgs>
{
    /// <summary>The task's name.</summary>
    public const string Name = "conveyor.noop";

    /// <inheritdoc />
    public Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken) => Task.CompletedTask;
}

/// <summary>Registration of built-in tasks.</summary>
public static class BuiltInTaskExtensions
{
    /// <summary>Registers <c>conveyor.noop</c>.</summary>
    public static ConveyorBuilder AddNoopTask(this ConveyorBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.AddTask<NoopTask>(NoopTask.Name);
    }

    /// <summary>Registers <c>conveyor.sleep</c> (<see cref="SleepTask"/>).</summary>
    public static ConveyorBuilder AddSleepTask(this ConveyorBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.AddTask<SleepTask>(SleepTask.Name);
    }
}
