using Conveyor.Server.Cli;
using Conveyor.Server.Supervisor;

// Handed over by `conveyor worker --processes N`, which read and checked its settings and then replaced itself with this
// lean supervisor: none of the command line, configuration, DI or logging stacks is loaded here (see LeanSupervisor).
if (LeanSupervisor.TakeHandoff() is { } handoff)
{
    return await LeanSupervisor.RunAsync(handoff).ConfigureAwait(false);
}
return await ConveyorCommandLine.RunAsync(args, Console.Out, Console.Error).ConfigureAwait(false);
