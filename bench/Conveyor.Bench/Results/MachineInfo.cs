using System.Runtime;
using System.Runtime.InteropServices;

namespace Conveyor.Bench.Results;

/// <summary>What the figures were measured on.</summary>
internal sealed record MachineInfo(
    string Processor,
    int Cores,
    string Runtime,
    string Os,
    string Gc,
    string LoadAverageAtStart,
    DateTimeOffset StartedAt)
{
    public static MachineInfo Read() => new(
        ReadProcessor(),
        Environment.ProcessorCount,
        RuntimeInformation.FrameworkDescription,
        RuntimeInformation.OSDescription,
        $"{(GCSettings.IsServerGC ? "server" : "workstation")}, {(GCSettings.LatencyMode == GCLatencyMode.Batch ? "non-concurrent" : "concurrent")}",
        ReadFirstLine("/proc/loadavg") ?? "n/a",
        DateTimeOffset.UtcNow);

    private static string ReadProcessor()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
            {
                if (line.StartsWith("model name", StringComparison.Ordinal))
                {
                    return line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim();
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return RuntimeInformation.ProcessArchitecture.ToString();
    }

    private static string? ReadFirstLine(string path)
    {
        try
        {
            return File.ReadLines(path).FirstOrDefault();
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }
}
