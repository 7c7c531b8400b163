using Conveyor.Server.Supervisor;
using Microsoft.Extensions.Logging;

namespace Conveyor.Server.Tests;

/// <summary>The settings <c>conveyor worker --processes N</c> hands to its lean form through one environment variable
/// come back as they were, whatever the flags' values hold.</summary>
public sealed class SupervisorHandoffTests
{
    [Fact]
    public void Settings_log_format_and_flags_come_back_as_they_were()
    {
        var flags = new Dictionary<string, string?>
        {
            ["Conveyor:DatabaseUrl"] = "postgresql://user:p%40ss&word=x@db:5432/conveyor?schema=a b",
            ["Conveyor:Worker:Queues"] = "high:3,default:1",
            ["Conveyor:Worker:Processes"] = "3",
            ["Conveyor:Worker:Id"] = null,
            ["Conveyor:Note"] = "line one\nline two, ünïcödé",
        };
        var log = new SupervisorLogFormat
        {
            MinimumLevel = LogLevel.Warning,
            Formatter = "json",
            TimestampFormat = "HH:mm:ss ",
            UseUtcTimestamp = true,
            SingleLine = true,
            IncludeScopes = true,
            Colors = true,
            JsonIndented = true,
            StandardErrorThreshold = LogLevel.Error,
        };
        var handoff = new SupervisorHandoff(3, TimeSpan.FromSeconds(40.5), log, flags);

        var decoded = SupervisorHandoff.Decode(handoff.Encode());

        Assert.Equal(3, decoded.Processes);
        Assert.Equal(TimeSpan.FromSeconds(40.5), decoded.GracefulTimeout);
        Assert.Equal(log, decoded.Log);
        // A flag without a value sets nothing, so it is not handed over.
        Assert.Equal(flags.Where(f => f.Value is not null).OrderBy(f => f.Key), decoded.Flags.OrderBy(f => f.Key));
    }

    [Fact]
    public void No_time_stamp_format_stays_none()
    {
        var handoff = new SupervisorHandoff(1, TimeSpan.FromSeconds(40), new SupervisorLogFormat { TimestampFormat = null }, new Dictionary<string, string?>());

        Assert.Null(SupervisorHandoff.Decode(handoff.Encode()).Log.TimestampFormat);
    }

    [Theory]
    [InlineData("processes=2")]
    [InlineData("garbage")]
    public void A_value_it_did_not_write_is_refused_naming_the_variable(string value)
    {
        var error = Assert.Throws<FormatException>(() => SupervisorHandoff.Decode(value));
        Assert.Contains(SupervisorHandoff.VariableName, error.Message, StringComparison.Ordinal);
    }
}
