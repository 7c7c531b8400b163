namespace Conveyor.Bench.Infrastructure;

/// <summary>The runtime settings the <c>conveyor</c> executable ships with (the RuntimeHostConfigurationOption items of
/// src/Conveyor.Server/Conveyor.Server.csproj), for the Conveyor worker processes this harness starts in its own
/// executable, which stand for <c>conveyor worker</c>. The peers' processes and the in-process workloads run without
/// them.</summary>
internal static class ConveyorRuntime
{
    /// <summary>A new environment for a Conveyor worker process: thread-pool threads that run out of work block at once
    /// instead of spinning first, and no instrumented JIT tier (each variable overrides the runtime's default as the
    /// executable's runtimeconfig.json does).</summary>
    public static Dictionary<string, string> WorkerEnvironment() => new()
    {
        ["DOTNET_ThreadPool_UnfairSemaphoreSpinLimit"] = "0",
        ["DOTNET_TieredPGO"] = "0",
    };
}
