using System.Runtime.CompilerServices;
using Conveyor.Backends;
using Conveyor.Server.Hosting;

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
/// The backend, which hands back the leases of a child that exited, is built the first time a child exits
/// (<see cref="OnDemandBackend"/>), from the same flags and configuration: handing back cannot be left to the child (a
/// crashed child cannot, and after a stop nothing replaces it) nor to its replacement (the backoff delays it, and none
/// comes after a stop). From then on the supervisor holds that stack too, as it did before it had a lean form.
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
    /// from the environment, so that the children, which inherit it, run as workers.</summary>
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
        await using var backend = new OnDemandBackend(handoff.Flags);
        return await ConveyorSupervisor.SuperviseAsync(ConveyorSupervisor.SettingsFor(handoff.Processes, handoff.GracefulTimeout), backend.Get,
            new SupervisorConsoleLogger<WorkerSupervisor>(handoff.Log), TimeProvider.System, CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>The backend, built on first use from <paramref name="flags"/> and the configuration the supervisor was
    /// started with (<see cref="ConveyorHosts.BuildSupervisorServices"/>); it stays built from then on. A build that
    /// fails is tried again at the next exit.</summary>
    private sealed class OnDemandBackend(IReadOnlyDictionary<string, string?> flags) : IAsyncDisposable
    {
        private readonly Lock _gate = new();
        // Typed as the runtime's interfaces, so that loading this class loads no DI assembly.
        private IServiceProvider? _services;

        public IConveyorBackend Get()
        {
            lock (_gate)
            {
                _services ??= Build(flags);
            }
            return Resolve(_services);
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        private static ServiceProvider Build(IReadOnlyDictionary<string, string?> flags) => ConveyorHosts.BuildSupervisorServices(flags);

        [MethodImpl(MethodImplOptions.NoInlining)]
        private static IConveyorBackend Resolve(IServiceProvider services) => services.GetRequiredService<IConveyorBackend>();

        public ValueTask DisposeAsync() => _services is IAsyncDisposable services ? services.DisposeAsync() : ValueTask.CompletedTask;
    }
}
