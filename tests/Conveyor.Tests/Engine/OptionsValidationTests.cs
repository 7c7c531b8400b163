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
    [InlineData("WorkflowRetention", "Conveyor:Workflows:Retention must be a positive duration (default 7.00:00:00)")]
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
                case "WorkflowRetention": o.Workflows.Retention = TimeSpan.FromDays(-1); break;
                default: o.Worker.FetchWait = TimeSpan.Zero; break;
            }
        }).UseInMemoryBackend();
        using var host = builder.Build();

        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("Concurrency", "Conveyor:Worker:Concurrency is -5: it must be a whole number from 1 to 10000")]
    [InlineData("Heartbeat", "Conveyor:Worker:HeartbeatInterval is 00:00:15: it must be under half of Conveyor:Worker:LeaseDuration (00:00:30)")]
    [InlineData("Lease", "Conveyor:Worker:LeaseDuration is 00:00:00.5000000: it must be at least 00:00:01")]
    [InlineData("Queues", "Conveyor:Worker:Queues: 'high:ten' has weight 'ten'")]
    [InlineData("FetchConcurrency", "Conveyor:Worker:FetchConcurrency is 0: it must be a whole number from 1 to 16")]
    [InlineData("Prefetch", "Conveyor:Worker:Prefetch is 0: it must be a whole number from 1 to 100000")]
    [InlineData("MaxSnoozes", "Conveyor:Worker:MaxSnoozes is -1: it must be a whole number from 0 to 100000")]
    [InlineData("BulkBatchSize", "Conveyor:BulkBatchSize is 1001: it must be a whole number from 1 to 1000")]
    public async Task A_worker_setting_that_cannot_work_stops_the_start_with_its_name_and_range(string setting, string expected)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddConveyor(o =>
        {
            switch (setting)
            {
                case "Concurrency": o.Worker.Concurrency = -5; break;
                case "Heartbeat": o.Worker.HeartbeatInterval = TimeSpan.FromSeconds(15); break;
                case "Lease": o.Worker.LeaseDuration = TimeSpan.FromMilliseconds(500); o.Worker.HeartbeatInterval = TimeSpan.FromMilliseconds(100); break;
                case "Queues": o.Worker.Queues.Add("high:ten"); break;
                case "FetchConcurrency": o.Worker.FetchConcurrency = 0; break;
                case "MaxSnoozes": o.Worker.MaxSnoozes = -1; break;
                case "BulkBatchSize": o.BulkBatchSize = 1001; break;
                default: o.Worker.Prefetch = 0; break;
            }
        }).UseInMemoryBackend();
        using var host = builder.Build();

        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Every_bad_setting_is_reported_at_once()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddConveyor(o =>
        {
            o.Worker.Concurrency = 0;
            o.Scheduler.ReaperInterval = TimeSpan.Zero;
        }).UseInMemoryBackend();
        using var host = builder.Build();

        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Equal(2, error.Failures.Count());
        Assert.Contains(error.Failures, f => f.StartsWith("Conveyor:Worker:Concurrency", StringComparison.Ordinal));
        Assert.Contains(error.Failures, f => f.StartsWith("Conveyor:Scheduler:ReaperInterval", StringComparison.Ordinal));
    }
}
