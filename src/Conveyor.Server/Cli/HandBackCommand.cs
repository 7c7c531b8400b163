using System.Globalization;
using System.Runtime.InteropServices;
using Conveyor.Backends;
using Conveyor.Server.Supervisor;

namespace Conveyor.Server.Cli;

/// <summary>
/// <c>conveyor worker</c> started by a lean supervisor as a hand-back process (<see cref="HandBackProcess"/>): with the
/// settings the command read and checked, it hands back the leases and concurrency slots of the exited child named by
/// <see cref="HandBackProcess.VariableName"/>, announces the tasks this ended for good (<see cref="LeaseHandBack"/>),
/// writes how many leases it ended on standard output (the supervisor's answer; its log lines go to standard error) and
/// exits: 0, or 1 when the backend did not take them back within <see cref="HandBackProcess.BackendDeadline"/>.
/// </summary>
internal static partial class HandBackCommand
{
    /// <summary>The category of its log lines.</summary>
    public const string Category = "Conveyor.HandBack";

    public static async Task<int> RunAsync(IServiceProvider services, string workerId, TextWriter output)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(output);
        var logger = services.GetRequiredService<ILoggerFactory>().CreateLogger(Category);
        // The supervisor bounds this process and kills it if need be; a terminal's Ctrl+C or systemd's SIGTERM, sent to
        // the whole process group, must not cut a hand-back short (the supervisor waits for it as it stops).
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, context => context.Cancel = true);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context => context.Cancel = true);
        using var sigquit = PosixSignalRegistration.Create(PosixSignal.SIGQUIT, context => context.Cancel = true);
        using var deadline = new CancellationTokenSource(HandBackProcess.BackendDeadline);
        try
        {
            var backend = services.GetRequiredService<IConveyorBackend>();
            var sweep = await LeaseHandBack.RunAsync(backend, workerId, services.GetService<TimeProvider>() ?? TimeProvider.System, logger,
                deadline.Token).ConfigureAwait(false);
            LogHandedBack(logger, workerId, sweep.Count, sweep.Ended.Count);
            await output.WriteLineAsync(sweep.Count.ToString(CultureInfo.InvariantCulture)).ConfigureAwait(false);
            await output.FlushAsync(CancellationToken.None).ConfigureAwait(false);
            return 0;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogFailed(logger, ex, workerId);
            return 1;
        }
    }

    [LoggerMessage(1, LogLevel.Information, "Worker {WorkerId} exited without handing back its leases: {Count} handed back, {Ended} of them ended for good (their events sent)")]
    private static partial void LogHandedBack(ILogger logger, string workerId, int count, int ended);

    [LoggerMessage(2, LogLevel.Warning, "Could not hand back the leases of worker {WorkerId}; they come back when they run out")]
    private static partial void LogFailed(ILogger logger, Exception exception, string workerId);
}
