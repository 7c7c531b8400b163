namespace Conveyor.Server.Tests;

/// <summary>A redis-server of this test's own (not the shared test server, which other tests use meanwhile), run by
/// scripts/services/redis.sh in a private folder (CONVEYOR_REDIS_DIR) with the settings of the shared one: killed with
/// SIGKILL and restarted on the same data and port.</summary>
internal sealed class PrivateRedis : IAsyncDisposable
{
    private readonly Dictionary<string, string> _script;

    private PrivateRedis(Dictionary<string, string> script, string url)
    {
        _script = script;
        Url = url;
    }

    public string Url { get; }

    public static async Task<PrivateRedis> StartAsync(string folder)
    {
        var script = new Dictionary<string, string> { ["CONVEYOR_REDIS_DIR"] = folder };
        return new PrivateRedis(script, (await FaultTests.RunServiceScriptAsync("redis", "start", script)).Trim());
    }

    public Task KillAsync() => FaultTests.RunServiceScriptAsync("redis", "kill", _script);

    public Task RestartAsync() => FaultTests.RunServiceScriptAsync("redis", "restart", _script);

    // Killed and not started again: the script finds no server to stop.
    public async ValueTask DisposeAsync() => await FaultTests.RunServiceScriptAsync("redis", "stop", _script);
}
