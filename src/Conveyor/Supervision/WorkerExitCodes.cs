namespace Conveyor;

/// <summary>Exit codes with which a worker process ends on its own, so that a supervisor (<see cref="ConveyorSupervisor"/>,
/// systemd, Kubernetes) can tell a planned exit from a crash.</summary>
public static class WorkerExitCodes
{
    /// <summary>Recycled: past <see cref="WorkerOptions.MaxTasksPerChild"/> or <see cref="WorkerOptions.MaxMemoryPerChild"/>,
    /// it drained and exited to be replaced. 75 is sysexits' EX_TEMPFAIL ("try again").</summary>
    public const int Recycled = 75;

    /// <summary>A task passed the hard time limit (<see cref="WorkerOptions.TimeLimit"/>): the process ended itself to stop
    /// it. 124 is what GNU <c>timeout</c> returns for a command it stopped.</summary>
    public const int HardTimeLimit = 124;

    /// <summary>Whether a supervisor should replace a process that exited with <paramref name="exitCode"/> at once, with no
    /// crash backoff: it ended as planned.</summary>
    public static bool IsPlanned(int exitCode) => exitCode is Recycled or HardTimeLimit;
}
