using System.Globalization;
using System.Runtime.InteropServices;
using Conveyor.Backends;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Conveyor;

/// <summary>
/// Runs a program's worker as <see cref="WorkerOptions.Processes"/> supervised child processes of itself (Celery's
/// prefork pool, a process per child): <c>conveyor worker --processes 4</c>, or an app that hosts its own handlers:
/// <code>
/// // appsettings.json read once: a watch would cover a SQLite database in the app's folder (docs/sqlite.md).
/// var builder = Host.CreateApplicationBuilder(["--hostBuilder:reloadConfigOnChange=false", .. args]);
/// builder.Services.AddConveyor(builder.Configuration.GetSection("Conveyor")).AddTask&lt;Resize&gt;("images.resize").UseSqlite();
/// if (ConveyorSupervisor.IsRequested(builder.Configuration))
/// {
///     // The supervisor runs no host, only logging and the backend (to hand back the leases of children that crash).
///     await using var services = builder.Services.BuildServiceProvider();
///     return await ConveyorSupervisor.RunAsync(services);
/// }
/// using var host = builder.Build();
/// await host.RunAsync();
/// return Environment.ExitCode;
/// </code>
/// The supervisor starts the same program again with the same arguments; a child knows it is one by
/// <see cref="SupervisorProcessIdVariable"/> and runs the host, with the worker id the supervisor gave it.
/// SIGTERM or SIGINT drains every child within <see cref="WorkerOptions.ShutdownTimeout"/> (the graceful timeout) and a
/// margin, then kills what is left; a second signal kills them at once. Either way their leases are handed back: a child
/// that drained hands back its own and says so by its exit code (<see cref="WorkerExitCodes.HandedBackItsLeases"/>); for
/// any other exit the supervisor does it with the backend, which it builds only then.
/// </summary>
public static class ConveyorSupervisor
{
    /// <summary>Set in a child's environment to its supervisor's process id: the process is a supervised child.</summary>
    public const string SupervisorProcessIdVariable = "CONVEYOR_SUPERVISOR_PID";

    /// <summary>Set in a child's environment to the worker id the supervisor gave it (<see cref="WorkerOptions.Id"/>).</summary>
    public const string WorkerIdVariable = "CONVEYOR_WORKER__ID";

    /// <summary>The configuration key of <see cref="WorkerOptions.Processes"/>.</summary>
    public const string ProcessesKey = "Conveyor:Worker:Processes";

    /// <summary>Time a child gets past its drain (<see cref="WorkerOptions.ShutdownTimeout"/>) to cancel what still runs
    /// (up to 5 s) and write the outcomes, before the supervisor kills it.</summary>
    public static readonly TimeSpan StopMargin = TimeSpan.FromSeconds(10);

    /// <summary>Whether this process is a child of a supervisor.</summary>
    public static bool IsChildProcess => !string.IsNullOrEmpty(Environment.GetEnvironmentVariable(SupervisorProcessIdVariable));

    /// <summary>The worker id a supervisor gave this process, or null.</summary>
    public static string? ChildWorkerId => IsChildProcess && Environment.GetEnvironmentVariable(WorkerIdVariable) is { Length: > 0 } id ? id : null;

    /// <summary>Whether this process should supervise: <see cref="ProcessesKey"/> is 1 or more and it is not itself a child.</summary>
    public static bool IsRequested(IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        return !IsChildProcess && int.TryParse(configuration[ProcessesKey], NumberStyles.Integer, CultureInfo.InvariantCulture, out var processes) && processes > 0;
    }

    /// <summary>Whether this process should supervise: <see cref="WorkerOptions.Processes"/> is 1 or more and it is not itself a child.</summary>
    public static bool IsRequested(ConveyorOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return !IsChildProcess && options.Worker.Processes > 0;
    }

    /// <summary>Supervises <see cref="WorkerOptions.Processes"/> children until SIGTERM or SIGINT (or
    /// <paramref name="cancellationToken"/>), then drains them. Uses from <paramref name="services"/> only the options, the
    /// logging and, once a child has exited without handing back its leases itself (a crash, a kill, a hard time limit),
    /// the backend (<see cref="LeaseHandBack"/>). Returns the process's exit code: 0 after a drain, 128 + the signal after
    /// a second signal stopped it at once.</summary>
    /// <exception cref="OptionsValidationException">A worker setting is invalid.</exception>
    public static async Task<int> RunAsync(IServiceProvider services, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(services);
        var options = services.GetRequiredService<IOptions<ConveyorOptions>>().Value;
        if (options.Worker.Processes < 1)
        {
            throw new InvalidOperationException($"{ProcessesKey} must be 1 or more to supervise worker processes.");
        }
        var loggers = services.GetService<ILoggerFactory>() ?? NullLoggerFactory.Instance;
        var logger = loggers.CreateLogger<WorkerSupervisor>();
        var time = services.GetService<TimeProvider>() ?? TimeProvider.System;
        async Task<int> HandBackAsync(string workerId, CancellationToken handBackToken)
        {
            var backend = services.GetRequiredService<IConveyorBackend>();
            return (await LeaseHandBack.RunAsync(backend, workerId, time, logger, handBackToken).ConfigureAwait(false)).Count;
        }
        return await SuperviseAsync(SettingsFor(options.Worker.Processes, GracefulTimeoutFor(options), SpareFor(options)), HandBackAsync, logger, time,
            cancellationToken).ConfigureAwait(false);
    }

    /// <summary>How long children get to stop: their drain and <see cref="StopMargin"/>.</summary>
    internal static TimeSpan GracefulTimeoutFor(ConveyorOptions options) => options.Worker.ShutdownTimeout + StopMargin;

    /// <summary>Whether the supervisor keeps a spare child (<see cref="WorkerOptions.SpareProcess"/>): only where children
    /// recycle.</summary>
    internal static bool SpareFor(ConveyorOptions options) =>
        options.Worker.SpareProcess && (options.Worker.MaxTasksPerChild is not null || options.Worker.MaxMemoryPerChild is not null);

    /// <summary>Settings that start <paramref name="processes"/> children running this process's own command, and a spare
    /// beside them when <paramref name="spare"/>.</summary>
    internal static SupervisorSettings SettingsFor(int processes, TimeSpan gracefulTimeout, bool spare)
    {
        var (fileName, arguments) = CurrentCommand();
        return new SupervisorSettings
        {
            Processes = processes,
            FileName = fileName,
            Arguments = arguments,
            GracefulTimeout = gracefulTimeout,
            Spare = spare,
        };
    }

    /// <summary>Supervises until SIGTERM or SIGINT (or <paramref name="cancellationToken"/>), then drains; a second signal
    /// kills the children. <paramref name="handBack"/> is called for a child that exited without handing back its leases
    /// itself. Returns the process's exit code (see <see cref="RunAsync"/>).</summary>
    internal static async Task<int> SuperviseAsync(SupervisorSettings settings, HandBackLeases handBack, ILogger<WorkerSupervisor> logger,
        TimeProvider time, CancellationToken cancellationToken)
    {
        await using var supervisor = new WorkerSupervisor(settings, handBack, time, logger);

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        using var stopNow = new CancellationTokenSource();
        var signals = 0;
        var lastSignal = 0;
        void OnSignal(PosixSignalContext context)
        {
            // The first signal drains, the second kills the children; the runtime's own handling (exit) never runs.
            context.Cancel = true;
            lastSignal = context.Signal switch { PosixSignal.SIGINT => 2, PosixSignal.SIGQUIT => 3, _ => 15 };
            if (Interlocked.Increment(ref signals) == 1)
            {
                stop.Cancel();
            }
            else
            {
                stopNow.Cancel();
            }
        }
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        using var sigquit = PosixSignalRegistration.Create(PosixSignal.SIGQUIT, OnSignal);
        await supervisor.RunAsync(stop.Token, stopNow.Token).ConfigureAwait(false);
        return stopNow.IsCancellationRequested ? 128 + lastSignal : 0;
    }

    /// <summary>The program this process runs and its arguments, to start it again: the executable and, for
    /// <c>dotnet app.dll</c>, the host's own arguments and the application's path. Read from <c>/proc/self/cmdline</c>
    /// where there is one (it keeps everything the runtime host was given), else from the command-line arguments.</summary>
    public static (string FileName, IReadOnlyList<string> Arguments) CurrentCommand()
    {
        var executable = Environment.ProcessPath ?? throw new InvalidOperationException("The path of this process's executable is unknown.");
        const string ProcCommandLine = "/proc/self/cmdline";
        if (OperatingSystem.IsLinux() && File.Exists(ProcCommandLine))
        {
            var parts = File.ReadAllText(ProcCommandLine).Split('\0');
            // Each argument ends with a NUL, so the last part is empty.
            var count = parts.Length > 0 && parts[^1].Length == 0 ? parts.Length - 1 : parts.Length;
            if (count >= 1)
            {
                return (executable, parts[1..count]);
            }
        }
        var args = Environment.GetCommandLineArgs();
        // Under the dotnet host the first argument is the application's dll, which the host needs again.
        var isDotnetHost = Path.GetFileNameWithoutExtension(executable).Equals("dotnet", StringComparison.OrdinalIgnoreCase);
        return (executable, isDotnetHost ? args : args[1..]);
    }
}
