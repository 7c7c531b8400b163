using System.Runtime.CompilerServices;
using Conveyor;
using Conveyor.Sqlite;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

// dotnet run -- --Conveyor:Worker:Processes=2 --Conveyor:Worker:MaxMemoryPerChild=300MB
// Settings come from the usual host sources: appsettings.json, Conveyor__Worker__Processes=2, --Conveyor:Worker:Processes=2.
// appsettings.json is read once, not watched: a watch covers this whole folder, data/ and its database included, and
// would wake on every write to it (docs/sqlite.md, "The database and the app's folder").
var builder = Host.CreateApplicationBuilder(["--hostBuilder:reloadConfigOnChange=false", .. args]);
builder.Services.AddSingleton(new RunLog(builder.Configuration["Sample:RunLog"]));
builder.Services
    .AddConveyor(builder.Configuration.GetSection("Conveyor"))
    .AddTask<RecordRun>("sample.record")
    .AddTask<LeakMemory>("sample.leak")
    .AddTask<OverflowStack>("sample.overflow")
    .AddSleepTask()
    .UseSqlite(o => o.Path = builder.Configuration["Sample:Database"] ?? Path.Combine("data", "sample.db"));

if (ConveyorSupervisor.IsRequested(builder.Configuration))
{
    // The supervisor starts this program again for each worker process and keeps them running. It builds no host:
    // it needs only the options, the logging and the backend (to hand back the leases of a child that died).
    await using var services = builder.Services.BuildServiceProvider();
    return await ConveyorSupervisor.RunAsync(services);
}
using var host = builder.Build();
await host.RunAsync();
// A child that recycled itself, or ended a task past the hard time limit, set its exit code for the supervisor.
return Environment.ExitCode;

/// <summary>Where handlers note each run ("task-id pid" per line), so that tests can count the runs of each task: a file
/// per process (<c>{path}.{pid}</c>), because .NET appends at the position it found at open, and two processes appending
/// to one file would overwrite each other's lines.</summary>
internal sealed class RunLog(string? basePath)
{
    private readonly Lock _gate = new();
    private readonly string? path = basePath is null ? null : $"{basePath}.{Environment.ProcessId}";

    public void Record(TaskContext context)
    {
        if (path is null)
        {
            return;
        }
        lock (_gate)
        {
            File.AppendAllText(path, $"{context.TaskId} {Environment.ProcessId}\n");
        }
    }
}

/// <summary>Arguments of sample.record.</summary>
internal sealed record RecordArgs(int Ms = 0);

/// <summary>sample.record: notes the run, then waits <see cref="RecordArgs.Ms"/> milliseconds.</summary>
internal sealed class RecordRun(RunLog runs) : ITaskHandler<RecordArgs>
{
    public Task HandleAsync(RecordArgs args, TaskContext context, CancellationToken cancellationToken)
    {
        runs.Record(context);
        return args.Ms > 0 ? Task.Delay(args.Ms, cancellationToken) : Task.CompletedTask;
    }
}

/// <summary>Arguments of sample.leak: megabytes to leak, then milliseconds to wait.</summary>
internal sealed record LeakArgs(int Mb, int Ms = 0);

/// <summary>sample.leak: keeps <see cref="LeakArgs.Mb"/> megabytes alive for the rest of the process, as leaking task
/// code does (a cache that only grows, a static list); what --max-memory-per-child is for.</summary>
internal sealed class LeakMemory(RunLog runs) : ITaskHandler<LeakArgs>
{
    private static readonly List<byte[]> Leaked = [];

    public Task HandleAsync(LeakArgs args, TaskContext context, CancellationToken cancellationToken)
    {
        runs.Record(context);
        for (var i = 0; i < args.Mb; i++)
        {
            var block = new byte[1024 * 1024];
            // Written, so that the pages are resident and count in the process's RSS.
            Array.Fill(block, (byte)1);
            lock (Leaked)
            {
                Leaked.Add(block);
            }
        }
        return args.Ms > 0 ? Task.Delay(args.Ms, cancellationToken) : Task.CompletedTask;
    }
}

/// <summary>sample.overflow: recurses until the stack overflows, which ends the process (the runtime cannot recover
/// from it); the supervisor restarts the worker.</summary>
internal sealed class OverflowStack(RunLog runs) : ITaskHandler<NoArgs>
{
    public Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken)
    {
        runs.Record(context);
        return Task.FromResult(Recurse(1));
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static int Recurse(int depth) => Recurse(depth + 1) + 1;
}
