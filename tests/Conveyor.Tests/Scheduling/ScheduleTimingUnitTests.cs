using Conveyor.Scheduling;

namespace Conveyor.Tests.Scheduling;

public sealed class ScheduleTimingUnitTests
{
    private static ScheduleDefinition Cron(string cron, string zone = "UTC") => new() { Name = "s", Cron = cron, TimeZone = zone, Task = "t" };

    private static List<FieldError> Errors(ScheduleDefinition definition)
    {
        var errors = new List<FieldError>();
        ScheduleDefinitionValidator.Validate(definition, "", errors);
        return errors;
    }

    [Fact]
    public void A_six_field_cron_has_seconds_and_a_five_field_one_minutes()
    {
        var at = new DateTimeOffset(2027, 1, 1, 0, 0, 0, TimeSpan.Zero);

        Assert.Equal(at.AddSeconds(15), ScheduleTiming.For(Cron("*/15 * * * * *"), at).NextAfter(at));
        Assert.Equal(at.AddMinutes(5), ScheduleTiming.For(Cron("*/5 * * * *"), at).NextAfter(at));
    }

    [Fact]
    public void A_daily_cron_in_Paris_follows_daylight_saving_both_ways()
    {
        var timing = ScheduleTiming.For(Cron("0 0 3 * * *", "Europe/Paris"), DateTimeOffset.UnixEpoch);

        // Winter (UTC+1) then summer (UTC+2): 03:00 local is 02:00Z, then 01:00Z.
        var ticks = timing.Next(new DateTimeOffset(2027, 3, 26, 12, 0, 0, TimeSpan.Zero), 3);
        Assert.Equal([new DateTimeOffset(2027, 3, 27, 2, 0, 0, TimeSpan.Zero), new DateTimeOffset(2027, 3, 28, 1, 0, 0, TimeSpan.Zero),
            new DateTimeOffset(2027, 3, 29, 1, 0, 0, TimeSpan.Zero)], ticks);
    }

    [Fact]
    public void A_local_time_skipped_by_the_spring_change_fires_at_the_jump_and_a_repeated_one_fires_once()
    {
        var timing = ScheduleTiming.For(Cron("0 30 2 * * *", "Europe/Paris"), DateTimeOffset.UnixEpoch);

        // 28 March 2027: 02:00 local jumps to 03:00 (01:00Z). 31 October 2027: 02:00–03:00 local happens twice.
        Assert.Equal(new DateTimeOffset(2027, 3, 28, 1, 0, 0, TimeSpan.Zero), timing.NextAfter(new DateTimeOffset(2027, 3, 27, 12, 0, 0, TimeSpan.Zero)));
        var october = timing.Between(new DateTimeOffset(2027, 10, 30, 12, 0, 0, TimeSpan.Zero), new DateTimeOffset(2027, 10, 31, 12, 0, 0, TimeSpan.Zero), 10, out var total);
        Assert.Equal(1, total);
        Assert.Equal([new DateTimeOffset(2027, 10, 31, 0, 30, 0, TimeSpan.Zero)], october);
    }

    [Fact]
    public void Interval_ticks_count_from_the_anchor_second_and_between_keeps_the_latest()
    {
        var anchor = new DateTimeOffset(2027, 1, 1, 0, 0, 0, 400, TimeSpan.Zero);
        var timing = ScheduleTiming.For(new ScheduleDefinition { Name = "s", Every = TimeSpan.FromSeconds(10), Task = "t" }, anchor);

        Assert.Equal(anchor.AddMilliseconds(-400).AddSeconds(10), timing.NextAfter(anchor));
        var ticks = timing.Between(anchor, anchor.AddSeconds(100), 3, out var total);
        Assert.Equal(10, total);
        Assert.Equal([80, 90, 100], ticks.Select(t => (int)(t - anchor.AddMilliseconds(-400)).TotalSeconds));
    }

    [Theory]
    [InlineData("0 0 3 * *x", "cron")]
    [InlineData("0 0 3", "cron")]
    [InlineData("61 * * * * *", "cron")]
    public void A_bad_cron_is_refused_naming_the_field(string cron, string field)
    {
        var error = Assert.Single(Errors(Cron(cron)));
        Assert.Equal(field, error.Field);
        Assert.Contains(cron, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Other_bad_fields_are_each_refused_at_once()
    {
        var errors = Errors(new ScheduleDefinition
        {
            Name = "bad name",
            Every = TimeSpan.FromMilliseconds(500),
            TimeZone = "Mars/Olympus",
            Task = "",
            Args = "{not json",
            Queue = "a:b",
            Priority = 101,
            MaxAttempts = 0,
            MaxCatchUp = 0,
        });

        Assert.Equal(["name", "timeZone", "every", "task", "args", "queue", "priority", "maxAttempts", "maxCatchUp"], errors.Select(e => e.Field));
        Assert.Contains("Mars/Olympus", errors[1].Message, StringComparison.Ordinal);
        Assert.Contains("at least 1 second", errors[2].Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Both_cron_and_every_or_neither_is_refused()
    {
        Assert.Equal("cron", Assert.Single(Errors(Cron("* * * * *") with { Every = TimeSpan.FromSeconds(5) })).Field);
        Assert.Equal("cron", Assert.Single(Errors(Cron("* * * * *") with { Cron = null })).Field);
    }
}
