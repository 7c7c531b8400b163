namespace Conveyor;

/// <summary>Checks of the worker-process settings (supervisor, recycling, time limits), part of
/// <see cref="ConveyorOptionsValidator"/>. Each message names the command-line flag and the configuration key, and says
/// what is accepted.</summary>
internal static class WorkerProcessOptionsChecks
{
    /// <summary>More processes than this on one supervisor is a typo, not a deployment.</summary>
    public const int MaxProcesses = 1024;

    public static IEnumerable<string> Errors(WorkerOptions worker)
    {
        ArgumentNullException.ThrowIfNull(worker);
        if (worker.Processes is < 0 or > MaxProcesses)
        {
            yield return $"--processes (Conveyor:Worker:Processes) is {worker.Processes}: use 1 to {MaxProcesses} worker processes under a supervisor, or 0 (the default) to run the worker in this process.";
        }
        if (worker.MaxTasksPerChild is < 1)
        {
            yield return $"--max-tasks-per-child (Conveyor:Worker:MaxTasksPerChild) is {worker.MaxTasksPerChild}: use a number of tasks, 1 or more, or leave it unset to never recycle by count.";
        }
        if (worker.MaxMemoryPerChild is { } memory && !MemorySize.TryParse(memory, out _))
        {
            yield return $"--max-memory-per-child (Conveyor:Worker:MaxMemoryPerChild) '{memory}' is not a size: use {MemorySize.Forms}.";
        }
        if (worker.SoftTimeLimit is { } soft && soft <= TimeSpan.Zero)
        {
            yield return $"--soft-time-limit (Conveyor:Worker:SoftTimeLimit) is {soft}: use a positive duration (flag: seconds such as 300, or 500ms, 5m, 1h; configuration: hh:mm:ss), or leave it unset.";
        }
        if (worker.TimeLimit is { } hard && hard <= TimeSpan.Zero)
        {
            yield return $"--time-limit (Conveyor:Worker:TimeLimit) is {hard}: use a positive duration (flag: seconds such as 300, or 500ms, 5m, 1h; configuration: hh:mm:ss), or leave it unset.";
        }
        if (worker.SoftTimeLimit is { } softLimit && worker.TimeLimit is { } hardLimit && softLimit >= hardLimit && softLimit > TimeSpan.Zero)
        {
            yield return $"--soft-time-limit ({softLimit}) must be shorter than --time-limit ({hardLimit}): the soft limit cancels the handler's token first, the hard limit ends the process after it.";
        }
    }

    /// <summary>The limit in bytes of <see cref="WorkerOptions.MaxMemoryPerChild"/>, or null when unset.</summary>
    public static long? MaxMemoryBytes(WorkerOptions worker) =>
        worker.MaxMemoryPerChild is { } text && MemorySize.TryParse(text, out var bytes) ? bytes : null;
}
