using Conveyor.Server.Supervisor;
using Microsoft.Extensions.Logging;

namespace Conveyor.Server.Tests;

/// <summary>The settings <c>conveyor worker --processes N</c> hands to its lean form through one environment variable
/// come back as they were, whatever their values hold.</summary>
public sealed class SupervisorHandoffTests
{
    [Fact]
    public void Settings_and_log_format_come_back_as_they_were()
    {
        var log = new SupervisorLogFormat
        {
            MinimumLevel = LogLevel.Warning,
            Formatter = "json",
            // Characters that the encoding must carry: its separators, a percent sign, a line break, non-ASCII.
            TimestampFormat = "yyyy-MM-dd'T'HH:mm:ss'&a=b%40 x\nünïcödé' ",
            UseUtcTimestamp = true,
            SingleLine = true,
            IncludeScopes = true,
            Colors = true,
            JsonIndented = true,
            StandardErrorThreshold = LogLevel.Error,
        };
        var handoff = new SupervisorHandoff(3, TimeSpan.FromSeconds(40.5), log, Spare: true);

        var decoded = SupervisorHandoff.Decode(handoff.Encode());

        Assert.Equal(3, decoded.Processes);
        Assert.Equal(TimeSpan.FromSeconds(40.5), decoded.GracefulTimeout);
        Assert.Equal(log, decoded.Log);
        Assert.True(decoded.Spare);
        Assert.False(SupervisorHandoff.Decode((handoff with { Spare = false }).Encode()).Spare);
    }

    [Fact]
    public void No_time_stamp_format_stays_none()
    {
        var handoff = new SupervisorHandoff(1, TimeSpan.FromSeconds(40), new SupervisorLogFormat { TimestampFormat = null });

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
