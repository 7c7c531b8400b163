namespace Conveyor.Server.Supervisor;

/// <summary>
/// The supervisor of <c>conveyor worker --processes N</c> in its lean form. The command reads and checks its settings
/// with the full stack (System.CommandLine, configuration from files and the environment, options validation, DI and
/// logging), so that a bad setting stops it with the same message as any command; then, instead of supervising from
/// that process, it replaces its program with itself (<see cref="ProcessImage"/>: same process id) and hands over the
/// checked settings (<see cref="SupervisorHandoff"/>). <c>Program.cs</c> sees the handoff before anything else and runs
/// <see cref="RunAsync"/>: the same <see cref="WorkerSupervisor"/>, with a small console logger and no host, DI,
/// configuration or command-line parser loaded. The supervisor's resident memory is counted beside every child's.
/// </summary>
/// <remarks>
/// It never builds the backend, for its whole life. A child that drained (recycled, or stopped) hands back its own
/// leases and says so by its exit code (<see cref="WorkerExitCodes.HandedBackItsLeases"/>); for any other exit (a crash,
/// a kill, a hard time limit, a drain the backend did not confirm) the supervisor starts a hand-back process
/// (<see cref="HandBackProcess"/>): the same command in the same environment, which builds the backend, hands back that
/// child's leases, announces the tasks this ended for good, prints how many leases it ended and exits. Handing back
/// cannot be left to the crashed child, nor to its replacement (the backoff delays it, and none comes after a stop).
/// </remarks>
internal static class LeanSupervisor
{
    /// <summary>Whether this command can supervise in the lean form (Linux); elsewhere it supervises in-process.</summary>
    public static bool IsSupported => ProcessImage.IsSupported;

    /// <summary>Replaces this process with the lean supervisor. Returns only if that failed, having said so on
    /// <paramref name="error"/>: the caller then supervises from this process.</summary>
    public static void ReplaceThisProcess(SupervisorHandoff handoff, TextWriter output, TextWriter error)
    {
        ArgumentNullException.ThrowIfNull(handoff);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(error);
        output.Flush();
        var errorNumber = ProcessImage.ReplaceWithSelf(new Dictionary<string, string> { [SupervisorHandoff.VariableName] = handoff.Encode() });
        error.WriteLine($"conveyor: could not restart as the lean supervisor (execve failed with error {errorNumber}); supervising from this process.");
    }

    /// <summary>The handoff of the command that replaced itself with this process, or null when it was not. Removed
    /// from the environment, so that the children and hand-back processes, which inherit it, run the command itself.</summary>
    public static SupervisorHandoff? TakeHandoff()
    {
        if (Environment.GetEnvironmentVariable(SupervisorHandoff.VariableName) is not { } value)
        {
            return null;
        }
        Environment.SetEnvironmentVariable(SupervisorHandoff.VariableName, null);
        return SupervisorHandoff.Decode(value);
    }

    /// <summary>Supervises until SIGTERM or SIGINT; returns the exit code (see <see cref="ConveyorSupervisor.RunAsync"/>).</summary>
    public static async Task<int> RunAsync(SupervisorHandoff handoff)
    {
        ArgumentNullException.ThrowIfNull(handoff);
        // A hand-back starts a process first: it gets longer than a call to a backend already built.
        var settings = ConveyorSupervisor.SettingsFor(handoff.Processes, handoff.GracefulTimeout, handoff.Spare) with { AbandonTimeout = HandBackProcess.Timeout };
        return await ConveyorSupervisor.SuperviseAsync(settings,
            (workerId, cancellationToken) => HandBackProcess.RunAsync(settings.FileName, settings.Arguments, workerId, cancellationToken),
            new SupervisorConsoleLogger<WorkerSupervisor>(handoff.Log), TimeProvider.System, CancellationToken.None).ConfigureAwait(false);
    }
}
