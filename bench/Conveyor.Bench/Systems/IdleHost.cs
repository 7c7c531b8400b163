using Conveyor.Sqlite;

namespace Conveyor.Bench.Systems;

/// <summary>
/// The hidden <c>__idle-host</c> command: a minimal worker process (a Conveyor generic host with a
/// worker, or a Hangfire BackgroundJobServer) that prints <c>ready</c> and then idles until it is
/// killed. The rss workload starts it as a child process to read its memory.
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
                using (var hangfire = new HangfireInstance())
                {
                    hangfire.StartServer(workers);
                    await IdleAsync(ct);
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
