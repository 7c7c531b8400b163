using Conveyor.Server.Cli;
using Conveyor.Server.Supervisor;

// Handed over by `conveyor worker --processes N`, which read and checked its settings and then replaced itself with this
// lean supervisor: none of the command line, configuration, DI or logging stacks is loaded here (see LeanSupervisor).
SupervisorHandoff? handoff;
try
{
    handoff = LeanSupervisor.TakeHandoff();
}
catch (Exception ex) when (ex is FormatException or OverflowException or ArgumentException)
{
    // Not one this program wrote (set by hand, or left in an environment): say so rather than crash.
    await Console.Error.WriteLineAsync($"conveyor: {ex.Message} Unset {SupervisorHandoff.VariableName}: only conveyor worker --processes sets it.").ConfigureAwait(false);
    return 2;
}
if (handoff is not null)
{
    return await LeanSupervisor.RunAsync(handoff).ConfigureAwait(false);
}
return await ConveyorCommandLine.RunAsync(args, Console.Out, Console.Error).ConfigureAwait(false);
