namespace Conveyor;

/// <summary>Exit codes with which a worker process ends on its own, so that a supervisor (<see cref="ConveyorSupervisor"/>,
/// systemd, Kubernetes) can tell a planned exit from a crash, and whether the process handed back its leases itself.</summary>
public static class WorkerExitCodes
{
    /// <summary>Recycled: past <see cref="WorkerOptions.MaxTasksPerChild"/> or <see cref="WorkerOptions.MaxMemoryPerChild"/>,
    /// it drained and exited to be replaced. 75 is sysexits' EX_TEMPFAIL ("try again"). A supervised child exits with it
    /// only once the backend confirmed that every lease it held went back (else <see cref="LeasesNotHandedBack"/>).</summary>
    public const int Recycled = 75;

    /// <summary>A supervised child (<see cref="ConveyorSupervisor.IsChildProcess"/>) stopped without the backend's
    /// confirmation that every lease it held went back (the backend did not answer, or the drain did not get that far):
    /// its supervisor hands them back, and replaces it after the crash backoff. A child starts with this code and keeps
    /// it until its drain's last hand-back is confirmed.</summary>
    public const int LeasesNotHandedBack = 76;

    /// <summary>A task passed the hard time limit (<see cref="WorkerOptions.TimeLimit"/>): the process ended itself to stop
    /// it. 124 is what GNU <c>timeout</c> returns for a command it stopped.</summary>
    public const int HardTimeLimit = 124;

    /// <summary>Whether a supervisor should replace a process that exited with <paramref name="exitCode"/> at once, with no
    /// crash backoff: it ended as planned.</summary>
    public static bool IsPlanned(int exitCode) => exitCode is Recycled or HardTimeLimit;

    /// <summary>Whether a supervised child that exited with <paramref name="exitCode"/> handed back every lease it held
    /// itself, confirmed by the backend: 0 (it was asked to stop) and <see cref="Recycled"/>, which it sets only then.
    /// After any other exit (a crash, a kill, <see cref="HardTimeLimit"/>, <see cref="LeasesNotHandedBack"/>) its
    /// supervisor hands them back.</summary>
    public static bool HandedBackItsLeases(int exitCode) => exitCode is 0 or Recycled;

    /// <summary>The exit code of a supervised child at the end of its drain.</summary>
    internal static int ForChild(bool recycling, bool leasesHandedBack) =>
        !leasesHandedBack ? LeasesNotHandedBack : recycling ? Recycled : 0;
}
