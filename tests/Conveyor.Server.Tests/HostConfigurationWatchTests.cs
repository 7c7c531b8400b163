using Conveyor.Server.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Configuration.Json;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Server.Tests;

/// <summary>The <c>conveyor</c> hosts read appsettings.json once and do not watch it: a watch covers the whole working
/// directory, where an embedded SQLite database usually lives, and woke on every page its writer wrote.</summary>
public sealed class HostConfigurationWatchTests
{
    [Fact]
    public void Worker_and_tool_hosts_read_their_json_files_without_watching_them()
    {
        var environment = new Dictionary<string, string?> { ["DATABASE_URL"] = "sqlite:///" + Path.Combine(Path.GetTempPath(), "unused.db") };
        using var host = ConveyorHosts.BuildHost(HostRole.Tool, new Dictionary<string, string?>(), environment);

        AssertNotWatched((IConfigurationRoot)host.Services.GetRequiredService<IConfiguration>());
    }

    [Fact]
    public void Server_host_reads_its_json_files_without_watching_them() =>
        AssertNotWatched(ConveyorHosts.CreateServerBuilder().Configuration);

    private static void AssertNotWatched(IConfigurationRoot configuration)
    {
        var jsonSources = configuration.Providers.OfType<JsonConfigurationProvider>().Select(p => p.Source).ToList();
        // appsettings.json and appsettings.{Environment}.json (optional files: present as sources whether or not they exist).
        Assert.Contains(jsonSources, s => s.Path == "appsettings.json");
        Assert.All(jsonSources, s => Assert.False(s.ReloadOnChange, $"{s.Path} is watched"));
    }
}
