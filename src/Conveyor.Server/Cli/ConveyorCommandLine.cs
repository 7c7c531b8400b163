using System.CommandLine;
using System.CommandLine.Help;
using Conveyor.Server.Configuration;

namespace Conveyor.Server.Cli;

/// <summary>The <c>conveyor</c> command line: <c>server</c> (the default), <c>worker</c>, <c>enqueue</c>, <c>info</c>,
/// <c>tasks</c>, <c>task</c>, <c>cancel</c>, <c>pause</c>, <c>resume</c>, <c>workers</c>, <c>schedules</c>, <c>retry</c>,
/// <c>purge</c>, <c>keys</c>, <c>doctor</c>, <c>migrate</c>.</summary>
internal static class ConveyorCommandLine
{
    /// <summary>Parses <paramref name="args"/> and runs the command. Ctrl+C and SIGTERM are left to the hosts, which
    /// drain the worker; System.CommandLine's own handling would end the process after 2 s.</summary>
    public static Task<int> RunAsync(string[] args, TextWriter output, TextWriter error) =>
        Build(output, error).Parse(args).InvokeAsync(new InvocationConfiguration
        {
            Output = output,
            Error = error,
            ProcessTerminationTimeout = null,
        });

    /// <summary>The command tree. The root is a plain command named <c>conveyor</c> rather than a RootCommand, which
    /// names itself after the entry assembly (Conveyor.Server) in help.</summary>
    public static Command Build(TextWriter output, TextWriter error)
    {
        var global = new ConfigurationFlags();
        var root = new Command("conveyor",
            "Conveyor: a distributed task platform for .NET. Without a command, runs the server: HTTP API on " +
            "http://127.0.0.1:8000, a worker and the scheduler, SQLite at ./data/conveyor.db.")
        {
            new HelpOption { Recursive = true },
            new VersionOption(),
        };
        global.Add(root, new Option<string>("--database-url")
        {
            Description = "Database URL [env DATABASE_URL]: sqlite:///./data/conveyor.db (relative to the working directory) " +
                "or sqlite:////var/lib/conveyor/conveyor.db (absolute), ?synchronous=full to sync every commit; " +
                "or postgresql://user:password@host:5432/database[?schema=conveyor] for PostgreSQL.",
            HelpName = "url",
            Recursive = true,
        }, "Conveyor:DatabaseUrl");
        global.Add(root, new Option<string>("--redis-url")
        {
            Description = "Redis URL [env REDIS_URL]: redis://[:password@]host[:port][/db], or rediss:// for TLS; uses the Redis " +
                "backend unless --database-url names another. DATABASE_URL=redis://… does the same.",
            HelpName = "url",
            Recursive = true,
        }, "Conveyor:RedisUrl");
        global.Add(root, new Option<string>("--amqp-url")
        {
            Description = "RabbitMQ URL [env AMQP_URL]: amqp://user:password@host:5672/vhost, or amqps:// for TLS; moves the queue role " +
                "to RabbitMQ, with --database-url (SQLite or PostgreSQL) keeping state, results and coordination.",
            HelpName = "url",
            Recursive = true,
        }, "Conveyor:AmqpUrl");
        global.Add(root, new Option<string>("--log-level")
        {
            Description = "Log level [env LOG_LEVEL]: trace, debug, information, warning, error, critical or none. Default information.",
            HelpName = "level",
            Recursive = true,
        }, ConveyorConfiguration.LogLevelKey);

        var rootServer = ServerCommand.AddOptions(root);
        root.SetAction((parse, _) => ServerCommand.RunAsync(Flags(parse, global, rootServer), output, error));

        var server = new Command("server", "Run the HTTP API, a worker and the scheduler (the default command).");
        var serverFlags = ServerCommand.AddOptions(server);
        server.SetAction((parse, _) => ServerCommand.RunAsync(Flags(parse, global, serverFlags), output, error));
        root.Subcommands.Add(server);

        root.Subcommands.Add(WorkerCommand.Create(global, output, error));
        root.Subcommands.Add(EnqueueCommand.Create(global, output, error));
        root.Subcommands.Add(InfoCommand.Create(global, output, error));
        root.Subcommands.Add(TasksCommand.CreateList(global, output, error));
        root.Subcommands.Add(TasksCommand.CreateShow(global, output, error));
        root.Subcommands.Add(OperatorCommands.CreateCancel(global, output, error));
        root.Subcommands.Add(OperatorCommands.CreatePause(pause: true, global, output, error));
        root.Subcommands.Add(OperatorCommands.CreatePause(pause: false, global, output, error));
        root.Subcommands.Add(OperatorCommands.CreateWorkers(global, output, error));
        root.Subcommands.Add(SchedulesCommand.Create(global, output, error));
        root.Subcommands.Add(LimitsCommand.Create(global, output, error));
        root.Subcommands.Add(BulkCommand.Create(purge: false, global, output, error));
        root.Subcommands.Add(BulkCommand.Create(purge: true, global, output, error));
        root.Subcommands.Add(Keys.KeysCommand.Create(global, output, error));
        root.Subcommands.Add(Users.UsersCommand.Create(global, output, error));
        root.Subcommands.Add(AuditCommand.Create(global, output, error));
        root.Subcommands.Add(DoctorCommand.Create(global, output, error));
        root.Subcommands.Add(MigrateCommand.Create(global, output, error));
        return root;
    }

    /// <summary>The configuration keys set by the global and the command's flags.</summary>
    public static Dictionary<string, string?> Flags(ParseResult parse, ConfigurationFlags global, ConfigurationFlags command) =>
        command.Read(parse, global.Read(parse));

    /// <summary>Adds <c>--concurrency</c> and <c>--queues</c>, which the server and the worker share.</summary>
    public static void AddWorkerOptions(Command command, ConfigurationFlags flags)
    {
        flags.Add(command, new Option<int?>("--concurrency")
        {
            Description = "Handlers that run at once [env CONVEYOR_WORKER__CONCURRENCY]. Default 16.",
            HelpName = "n",
        }, "Conveyor:Worker:Concurrency");
        flags.Add(command, new Option<string>("--queues")
        {
            Description = "Queues to consume, comma-separated, each 'name' or 'name:weight' [env CONVEYOR_WORKER__QUEUES]. Default 'default'.",
            HelpName = "list",
        }, "Conveyor:Worker:Queues");
        flags.Add(command, new Option<string>("--encryption-key-file")
        {
            Description = "A file of keys that encrypt task arguments, results and errors at rest, one a line as 'id:base64' (32 bytes), " +
                "the current key first [env CONVEYOR_ENCRYPTION_KEY_FILE]. One key may come from CONVEYOR_ENCRYPTION_KEY instead; never from " +
                "a flag, which 'ps' would show. Default none: stored as given.",
            HelpName = "path",
        }, "Conveyor:Encryption:KeyFile");
    }

    /// <summary>Adds the options of worker processes: the supervisor, recycling, time limits and the drain.</summary>
    public static void AddWorkerProcessOptions(Command command, ConfigurationFlags flags)
    {
        flags.Add(command, new Option<int?>("--processes")
        {
            Description = "Run this many worker processes under a supervisor that restarts them when they exit, crash or are recycled, " +
                "and hands back their tasks at once [env CONVEYOR_WORKER__PROCESSES]. Each runs --concurrency handlers. 1 to 1024; " +
                "default 0: one worker in this process.",
            HelpName = "n",
        }, "Conveyor:Worker:Processes");
        flags.Add(command, new Option<long?>("--max-tasks-per-child")
        {
            Description = "Recycle a worker process after it finished this many tasks: it stops fetching, finishes what it runs and " +
                "exits (code 75) to be replaced [env CONVEYOR_WORKER__MAX_TASKS_PER_CHILD]. 1 or more; default never.",
            HelpName = "n",
        }, "Conveyor:Worker:MaxTasksPerChild");
        flags.Add(command, new Option<string>("--max-memory-per-child")
        {
            Description = "Recycle a worker process once its resident memory passes this size, as --max-tasks-per-child does: 512MB, 1GB, " +
                "or a number of kilobytes as Celery takes it (1048576) [env CONVEYOR_WORKER__MAX_MEMORY_PER_CHILD]. Default never.",
            HelpName = "size",
        }, "Conveyor:Worker:MaxMemoryPerChild");
        flags.Add(command, new Option<bool?>("--spare-process")
        {
            Description = "With recycling on, keep one more worker process started and waiting, which takes the place of the next child " +
                "that recycles or exits, so that a recycle costs no start [env CONVEYOR_WORKER__SPARE_PROCESS]. true or false; default true.",
            HelpName = "bool",
        }, "Conveyor:Worker:SpareProcess");
        flags.Add(command, new Option<string>("--soft-time-limit")
        {
            Description = "Soft time limit of tasks that set no timeout: their handler's token is cancelled and the attempt fails with a " +
                $"timeout, retried by its policy [env CONVEYOR_WORKER__SOFT_TIME_LIMIT, hh:mm:ss]. {DurationFlag.Forms}; default none.",
            HelpName = "duration",
        }, "Conveyor:Worker:SoftTimeLimit", DurationFlag.ToConfiguration);
        flags.Add(command, new Option<string>("--time-limit")
        {
            Description = "Hard time limit of every task: a handler still running this long ends its worker process (code 124); the attempt " +
                "is recorded failed (Conveyor.HardTimeLimit, retried by its policy) and the process's other tasks come back at once. " +
                $"Longer than --soft-time-limit [env CONVEYOR_WORKER__TIME_LIMIT, hh:mm:ss]. {DurationFlag.Forms}; default none.",
            HelpName = "duration",
        }, "Conveyor:Worker:TimeLimit", DurationFlag.ToConfiguration);
        flags.Add(command, new Option<string>("--graceful-timeout")
        {
            Description = "On SIGTERM or SIGINT, how long running tasks get to finish before they are cancelled; unstarted tasks are handed " +
                "back at once, and a second signal stops at once [env CONVEYOR_WORKER__SHUTDOWN_TIMEOUT, hh:mm:ss]. " +
                $"{DurationFlag.Forms}; default 30s.",
            HelpName = "duration",
        }, "Conveyor:Worker:ShutdownTimeout", DurationFlag.ToConfiguration);
    }

    /// <summary>Prints a configuration problem; the exit code for it.</summary>
    public static int Invalid(TextWriter error, ConveyorConfigurationException exception)
    {
        error.WriteLine($"conveyor: {exception.Message}");
        return ExitCodes.InvalidInput;
    }
}
