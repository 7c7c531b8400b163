using Conveyor.Backends;
using Microsoft.Extensions.Hosting;

namespace Conveyor;

/// <summary>Creates or upgrades the backend's schema before the worker and the maintenance services start.</summary>
internal sealed class BackendStartupService(IConveyorBackend backend) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => backend.MigrateAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
