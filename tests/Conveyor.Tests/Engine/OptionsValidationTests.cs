using Conveyor.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor.Tests.Engine;

/// <summary>Settings of the maintenance services and the worker's fallback poll that cannot work are refused at start,
/// naming the setting and what it accepts.</summary>
public sealed class OptionsValidationTests
{
    [Theory]
    [InlineData("RetentionBatchSize", "Conveyor:Scheduler:RetentionBatchSize must be at least 1")]
    [InlineData("RetentionPassLimit", "Conveyor:Scheduler:RetentionPassLimit must be a positive duration")]
    [InlineData("LeaderLease", "Conveyor:Scheduler:LeaderLease must be at least 00:00:01")]
    [InlineData("FetchWait", "Conveyor:Worker:FetchWait must be a positive duration")]
    public async Task A_setting_that_cannot_work_stops_the_start_with_its_name(string setting, string expected)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddConveyor(o =>
        {
            switch (setting)
            {
                case "RetentionBatchSize": o.Scheduler.RetentionBatchSize = 0; break;
                case "RetentionPassLimit": o.Scheduler.RetentionPassLimit = TimeSpan.Zero; break;
                case "LeaderLease": o.Scheduler.LeaderLease = TimeSpan.FromMilliseconds(10); break;
                default: o.Worker.FetchWait = TimeSpan.Zero; break;
            }
        }).UseInMemoryBackend();
        using var host = builder.Build();

        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }
}
