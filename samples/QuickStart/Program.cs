using Conveyor;
using Conveyor.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

// appsettings.json is read once, not watched: a watch covers this whole folder, data/ and its database included, and
// would wake on every write to it (docs/sqlite.md, "The database and the app's folder").
var builder = Host.CreateApplicationBuilder(["--hostBuilder:reloadConfigOnChange=false", .. args]);
builder.Services
    .AddConveyor(o => o.Worker.Concurrency = 8)
    .AddTask<ScoreFlight>("flights.score", t => { t.MaxAttempts = 3; t.Timeout = TimeSpan.FromMinutes(2); })
    .UseSqlite(o => o.Path = "data/conveyor.db");
var app = builder.Build();
await app.StartAsync();

var client = app.Services.GetRequiredService<ITaskClient>();
var result = await client.EnqueueAsync("flights.score", new FlightArgs(42),
    new EnqueueOptions { Queue = "default", Delay = TimeSpan.FromSeconds(1), IdempotencyKey = "flight-42" });
Console.WriteLine($"{result.Id} {result.State}");
await app.WaitForShutdownAsync();

/// <summary>Arguments of flights.score.</summary>
internal sealed record FlightArgs(int FlightId);

/// <summary>Resolved in its own DI scope for every attempt; throw to retry with backoff,
/// throw PermanentTaskException to fail without retrying.</summary>
internal sealed partial class ScoreFlight(ILogger<ScoreFlight> logger) : ITaskHandler<FlightArgs, double>
{
    public async Task<double> HandleAsync(FlightArgs args, TaskContext context, CancellationToken cancellationToken)
    {
        LogScoring(args.FlightId, context.Attempt);
        await Task.Delay(100, cancellationToken).ConfigureAwait(false);
        return 0.97;
    }

    [LoggerMessage(1, LogLevel.Information, "Scoring flight {FlightId}, attempt {Attempt}")]
    private partial void LogScoring(int flightId, int attempt);
}
