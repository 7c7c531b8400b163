using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conveyor.Sqlite.Tests;

/// <summary>A database inside a folder that the app's configuration watches is found, and UseSqlite warns of it.</summary>
public sealed class SqliteWatchedFolderTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("conveyor-watch-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void A_reloading_json_source_finds_a_database_in_its_folder_or_below_only()
    {
        var watching = new ConfigurationBuilder().SetBasePath(_root).AddJsonFile("appsettings.json", optional: true, reloadOnChange: true).Build();
        var reading = new ConfigurationBuilder().SetBasePath(_root).AddJsonFile("appsettings.json", optional: true, reloadOnChange: false).Build();

        Assert.NotNull(SqliteWatchedFolder.Find(watching, Path.Combine(_root, "data", "conveyor.db")));
        Assert.NotNull(SqliteWatchedFolder.Find(watching, Path.Combine(_root, "conveyor.db")));
        Assert.Null(SqliteWatchedFolder.Find(reading, Path.Combine(_root, "data", "conveyor.db")));
        // A sibling whose name starts with the watched folder's is not inside it.
        Assert.Null(SqliteWatchedFolder.Find(watching, _root + "-other" + Path.DirectorySeparatorChar + "conveyor.db"));
        Assert.Null(SqliteWatchedFolder.Find(null, Path.Combine(_root, "conveyor.db")));
    }

    [Fact]
    public void A_watched_file_system_root_contains_every_database()
    {
        // A container without a working directory of its own runs from "/": its host watches the whole file system.
        var fileSystemRoot = Path.GetPathRoot(_root)!;
        // Polling its one file, not watching the whole file system (inotify on every folder) for the test.
        using var provider = new PhysicalFileProvider(fileSystemRoot) { UsePollingFileWatcher = true };
        var watching = new ConfigurationBuilder().SetFileProvider(provider).AddJsonFile("appsettings.json", optional: true, reloadOnChange: true).Build();

        Assert.Equal(fileSystemRoot, SqliteWatchedFolder.Find(watching, Path.Combine(_root, "conveyor.db")));
        (watching as IDisposable)?.Dispose();
    }

    [Fact]
    public void A_reloading_source_inside_a_chained_configuration_is_found()
    {
        var inner = new ConfigurationBuilder().SetBasePath(_root).AddJsonFile("appsettings.json", optional: true, reloadOnChange: true).Build();
        var outer = new ConfigurationBuilder().AddConfiguration(inner).Build();

        Assert.NotNull(SqliteWatchedFolder.Find(outer, Path.Combine(_root, "conveyor.db")));
    }

    [Theory]
    [InlineData(false, true)]
    [InlineData(true, false)]
    public void UseSqlite_warns_when_the_hosts_configuration_watches_the_databases_folder(bool readOnce, bool warned)
    {
        var logs = new CollectingLoggerProvider();
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings
        {
            Args = readOnce ? ["--hostBuilder:reloadConfigOnChange=false"] : [],
            ContentRootPath = _root,
        });
        builder.Logging.ClearProviders().AddProvider(logs);
        builder.Services.AddConveyor().UseSqlite(o => o.Path = Path.Combine(_root, "data", "conveyor.db"));
        using var host = builder.Build();

        // The container owns the backend and closes it with the host.
        host.Services.GetRequiredService<SqliteBackend>();

        Assert.Equal(warned, logs.Messages.Any(m => m.Contains("which this app's configuration watches", StringComparison.Ordinal)));
    }

    private sealed class CollectingLoggerProvider : ILoggerProvider
    {
        public List<string> Messages { get; } = [];

        public ILogger CreateLogger(string categoryName) => new Collector(Messages);

        public void Dispose()
        {
        }

        private sealed class Collector(List<string> messages) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                lock (messages)
                {
                    messages.Add(formatter(state, exception));
                }
            }
        }
    }
}
