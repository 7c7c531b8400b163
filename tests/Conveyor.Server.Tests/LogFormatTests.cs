using Conveyor.Server.Configuration;
using Conveyor.Server.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;

namespace Conveyor.Server.Tests;

/// <summary>Which console formatter a <c>conveyor</c> host uses: <c>LOG_FORMAT</c>, the framework's own
/// <c>Logging:Console:FormatterName</c>, systemd's <c>JOURNAL_STREAM</c>, else the one-line simple format.</summary>
public sealed class LogFormatTests
{
    [Theory]
    [InlineData(null, null, null, "simple")]
    [InlineData("json", null, null, "json")]
    [InlineData("JSON", null, "8:12345", "json")]
    [InlineData(null, null, "8:12345", "systemd")]
    [InlineData(null, "json", null, "json")]
    [InlineData(null, "systemd", null, "systemd")]
    [InlineData("simple", null, "8:12345", "simple")]
    public void Formatter_follows_LOG_FORMAT_the_frameworks_setting_and_systemd(string? logFormat, string? frameworkSetting, string? journalStream, string expected)
    {
        var environment = new Dictionary<string, string?> { ["DATABASE_URL"] = "sqlite:///" + Path.Combine(Path.GetTempPath(), "unused.db") };
        if (logFormat is not null)
        {
            environment["LOG_FORMAT"] = logFormat;
        }
        if (journalStream is not null)
        {
            environment["JOURNAL_STREAM"] = journalStream;
        }
        var flags = new Dictionary<string, string?>();
        if (frameworkSetting is not null)
        {
            // As appsettings.json or Logging__Console__FormatterName would set it.
            flags["Logging:Console:FormatterName"] = frameworkSetting;
        }

        using var host = ConveyorHosts.BuildHost(HostRole.Tool, flags, environment);

        Assert.Equal(expected, host.Services.GetRequiredService<IOptionsMonitor<ConsoleLoggerOptions>>().CurrentValue.FormatterName);
        if (expected == "json")
        {
            var json = host.Services.GetRequiredService<IOptionsMonitor<JsonConsoleFormatterOptions>>().CurrentValue;
            Assert.True(json.IncludeScopes);
            Assert.True(json.UseUtcTimestamp);
        }
    }

    [Fact]
    public void Unknown_LOG_FORMAT_stops_the_command_naming_the_accepted_formats()
    {
        var error = Assert.Throws<ConveyorConfigurationException>(() =>
            ConveyorHosts.BuildHost(HostRole.Tool, new Dictionary<string, string?>(), new Dictionary<string, string?> { ["LOG_FORMAT"] = "xml" }));

        Assert.Contains("LOG_FORMAT 'xml' is not a format; use json, simple or systemd.", error.Message, StringComparison.Ordinal);
    }
}
