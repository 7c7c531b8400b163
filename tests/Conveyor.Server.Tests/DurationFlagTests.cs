using Conveyor.Server.Cli;

namespace Conveyor.Server.Tests;

/// <summary>Durations on the command line (--time-limit, --soft-time-limit, --graceful-timeout) as Celery's flags take them.</summary>
public sealed class DurationFlagTests
{
    [Theory]
    [InlineData("300", "00:05:00")]
    [InlineData("2.5", "00:00:02.5000000")]
    [InlineData("500ms", "00:00:00.5000000")]
    [InlineData("30s", "00:00:30")]
    [InlineData("5m", "00:05:00")]
    [InlineData("1h", "01:00:00")]
    [InlineData("00:01:30", "00:01:30")]
    public void Seconds_and_units_become_configuration_durations(string flag, string configuration) =>
        Assert.Equal(configuration, DurationFlag.ToConfiguration(flag));

    [Theory]
    [InlineData("soon")]
    [InlineData("5 parsecs")]
    public void Text_that_is_no_duration_is_passed_on_for_the_configuration_to_report(string flag) =>
        Assert.Equal(flag, DurationFlag.ToConfiguration(flag));

    [Fact]
    public async Task A_flag_that_is_no_duration_stops_the_worker_naming_its_key()
    {
        var folder = TempFolder.Create();
        try
        {
            var (exitCode, _, error) = await ConveyorProcess.RunAsync(folder, new Dictionary<string, string> { ["DATABASE_URL"] = "sqlite:///" + Path.Combine(folder, "x.db") },
                "worker", "--time-limit", "soon");
            Assert.Equal(2, exitCode);
            Assert.Contains("Conveyor:Worker:TimeLimit", error, StringComparison.Ordinal);
        }
        finally
        {
            TempFolder.Delete(folder);
        }
    }
}
