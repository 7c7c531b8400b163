using Conveyor.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conveyor.Bench.Systems;

/// <summary>
/// The hidden <c>__idle-host</c> command: a minimal worker process, a generic host running either a
/// Conveyor worker or a Hangfire BackgroundJobServer, that prints <c>ready</c> and then idles until
/// it is killed. The rss workload starts it as a child process to read its memory.
/// </summary>
internal static class IdleHost
{
    public const string Command = "__idle-host";
    public const string ReadyLine = "ready";

    public static async Task<int> RunAsync(string system, string databasePath, int workers, CancellationToken ct)
    {
        switch (system)
        {
            case "conveyor":
                await using (await ConveyorInstance.StartAsync(databasePath, SqliteSynchronous.Normal, runWorker: true, workers, null, ct))
                {
                    await IdleAsync(ct);
                }
                return 0;
            case "hangfire":
                // The same generic host and logging as Conveyor's, so that the two differ only in the job system.
                var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
                builder.Logging.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace).SetMinimumLevel(LogLevel.Warning);
                builder.Services.AddHostedService(_ => new HangfireServerService(workers));
                using (var host = builder.Build())
                {
                    await host.StartAsync(ct);
                    await IdleAsync(ct);
                    await host.StopAsync(CancellationToken.None);
                }
                return 0;
            default:
                await Console.Error.WriteLineAsync($"unknown system '{system}'");
                return 2;
        }
    }

    private static async Task IdleAsync(CancellationToken ct)
    {
        Console.WriteLine(ReadyLine);
        try
        {
            await Task.Delay(Timeout.Infinite, ct);
        }
        catch (OperationCanceledException)
        {
            // Stopped by Ctrl+C or SIGTERM.
        }
    }
}

/// <summary>Runs a Hangfire server for the life of a generic host.</summary>
internal sealed class HangfireServerService(int workers) : IHostedService, IDisposable
{
    private HangfireInstance? _hangfire;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _hangfire = new HangfireInstance();
        _hangfire.StartServer(workers);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        Dispose();
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        _hangfire?.Dispose();
        _hangfire = null;
    }
}
