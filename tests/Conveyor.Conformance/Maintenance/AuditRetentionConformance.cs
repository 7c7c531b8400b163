using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conveyor.Conformance;

/// <summary>The leader's retention service deletes audit entries older than <c>Conveyor:Audit:Retention</c> and keeps the
/// rest, through the real service on the system clock.</summary>
public abstract class AuditRetentionConformance<TFactory> : ConformanceTest
    where TFactory : IConformanceBackendFactory, new()
{
    /// <summary>Runs on the system clock: the maintenance service runs for real.</summary>
    protected AuditRetentionConformance() : base(new TFactory(), TimeProvider.System)
    {
    }

    private AuditEntry Entry(string action, TimeSpan age) =>
        new(Guid.CreateVersion7(), DateTimeOffset.FromUnixTimeMilliseconds((Now - age).ToUnixTimeMilliseconds()), "cli", AuditActorKinds.Cli, action, null, AuditOutcomes.Ok);

    [Fact]
    public async Task Retention_deletes_audit_entries_past_their_retention_and_keeps_the_rest()
    {
        var audit = Backend.Audit ?? throw new InvalidOperationException($"{Backend.Name} keeps no audit log.");
        var kept = Entry("queue.resume", TimeSpan.FromDays(89));
        await audit.AppendAuditAsync(Entry("task.cancel", TimeSpan.FromDays(120)), Timeout);
        await audit.AppendAuditAsync(Entry("queue.pause", TimeSpan.FromDays(91)), Timeout);
        await audit.AppendAuditAsync(kept, Timeout);

        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(Backend);
        builder.Services.AddConveyor(o =>
        {
            o.RunWorker = false;
            o.Audit.Retention = TimeSpan.FromDays(90);
        });
        using var host = builder.Build();
        await host.StartAsync(Timeout);
        try
        {
            var clock = Stopwatch.StartNew();
            while ((await audit.ListAuditAsync(new AuditQuery(), Timeout)).Entries.Count > 1)
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(45), "audit entries past retention are left after 45 s");
                await Task.Delay(200, Timeout);
            }
        }
        finally
        {
            await host.StopAsync(CancellationToken.None);
        }
        Assert.Equal([kept], (await audit.ListAuditAsync(new AuditQuery(), Timeout)).Entries);
    }
}
