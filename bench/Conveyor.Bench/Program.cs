using Conveyor.Bench;

return await Cli.Build().Parse(args).InvokeAsync();
