namespace Conveyor.Tests.Supervision;

/// <summary>Memory sizes as operators write them, and the checks of the worker-process settings.</summary>
public sealed class WorkerProcessOptionsUnitTests
{
    [Theory]
    [InlineData("512MB", 512L * 1024 * 1024)]
    [InlineData("512mb", 512L * 1024 * 1024)]
    [InlineData("1GB", 1024L * 1024 * 1024)]
    [InlineData("1.5G", 1536L * 1024 * 1024)]
    [InlineData("800KB", 800L * 1024)]
    [InlineData("4096B", 4096L)]
    [InlineData(" 2 MiB ", 2L * 1024 * 1024)]
    // Celery's --max-memory-per-child: kilobytes.
    [InlineData("1048576", 1024L * 1024 * 1024)]
    public void Sizes_are_read_in_binary_units_and_a_plain_number_is_kilobytes(string text, long bytes)
    {
        Assert.True(MemorySize.TryParse(text, out var parsed));
        Assert.Equal(bytes, parsed);
    }

    [Theory]
    [InlineData("lots")]
    [InlineData("12XB")]
    [InlineData("-5MB")]
    [InlineData("0")]
    [InlineData("")]
    [InlineData("MB")]
    [InlineData("1e3MB")]
    public void Text_that_is_no_positive_size_is_refused(string text) => Assert.False(MemorySize.TryParse(text, out _));

    [Fact]
    public void The_defaults_pass() => Assert.Empty(WorkerProcessOptionsChecks.Errors(new WorkerOptions()));

    [Theory]
    [InlineData(-1)]
    [InlineData(1025)]
    public void Processes_out_of_range_are_refused_naming_the_flag(int processes)
    {
        var error = Assert.Single(WorkerProcessOptionsChecks.Errors(new WorkerOptions { Processes = processes }));
        Assert.StartsWith($"--processes (Conveyor:Worker:Processes) is {processes}: use 1 to 1024", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Every_bad_setting_is_reported_at_once()
    {
        var errors = WorkerProcessOptionsChecks.Errors(new WorkerOptions
        {
            MaxTasksPerChild = 0,
            MaxMemoryPerChild = "lots",
            SoftTimeLimit = TimeSpan.FromSeconds(10),
            TimeLimit = TimeSpan.FromSeconds(5),
        }).ToList();

        Assert.Equal(3, errors.Count);
        Assert.Contains(errors, e => e.StartsWith("--max-tasks-per-child (Conveyor:Worker:MaxTasksPerChild) is 0", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("--max-memory-per-child (Conveyor:Worker:MaxMemoryPerChild) 'lots' is not a size: use a size such as 512MB", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("--soft-time-limit (00:00:10) must be shorter than --time-limit (00:00:05)", StringComparison.Ordinal));
    }

    [Fact]
    public void Non_positive_time_limits_are_refused()
    {
        var errors = WorkerProcessOptionsChecks.Errors(new WorkerOptions { SoftTimeLimit = TimeSpan.Zero, TimeLimit = TimeSpan.FromSeconds(-1) }).ToList();
        Assert.Contains(errors, e => e.StartsWith("--soft-time-limit (Conveyor:Worker:SoftTimeLimit) is 00:00:00: use a positive duration", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("--time-limit (Conveyor:Worker:TimeLimit) is -00:00:01: use a positive duration", StringComparison.Ordinal));
    }

    [Fact]
    public void The_one_options_validator_reports_them()
    {
        var result = new ConveyorOptionsValidator().Validate(null, new ConveyorOptions { Worker = { MaxTasksPerChild = -3 } });
        Assert.True(result.Failed);
        Assert.Contains("--max-tasks-per-child (Conveyor:Worker:MaxTasksPerChild) is -3", result.FailureMessage, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(137, "was killed by signal 9 (SIGKILL)")]
    [InlineData(134, "was killed by signal 6 (SIGABRT: the runtime aborted, as on a stack overflow or a fatal error)")]
    [InlineData(75, "exited to be recycled (code 75)")]
    [InlineData(124, "exited after a task passed the hard time limit (code 124)")]
    [InlineData(1, "exited with code 1")]
    public void Exits_are_described_by_code_or_signal(int exitCode, string expected)
    {
        Assert.Equal(expected, WorkerSupervisor.DescribeExit(exitCode));
    }
}
