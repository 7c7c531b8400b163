using Conveyor.Server.Cli;

return await ConveyorCommandLine.RunAsync(args, Console.Out, Console.Error).ConfigureAwait(false);
