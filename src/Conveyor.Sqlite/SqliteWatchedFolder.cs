using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Logging;

namespace Conveyor.Sqlite;

/// <summary>
/// Whether the app's configuration watches a folder that holds the database. A host built by
/// <c>Host.CreateApplicationBuilder</c> or <c>WebApplication.CreateBuilder</c> reloads appsettings.json on change, and
/// does so by watching its whole content root and every folder under it (inotify on Linux): with the database there,
/// every page the writer puts in the WAL wakes the host's file-watching thread. Measured: 5–10 % of a drain's CPU in
/// one process, and a quarter of the throughput of two worker processes on one file (docs/sqlite.md).
/// </summary>
internal static partial class SqliteWatchedFolder
{
    /// <summary>The root of a reloading file source of <paramref name="configuration"/> (chained configurations
    /// included) that contains <paramref name="databasePath"/> (a full path), or null. Paths compare as text: a symbolic
    /// link into or out of the watched folder is not followed.</summary>
    public static string? Find(IConfiguration? configuration, string databasePath)
    {
        if (configuration is not IConfigurationRoot root)
        {
            return null;
        }
        var comparison = OperatingSystem.IsWindows() || OperatingSystem.IsMacOS() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        foreach (var provider in root.Providers)
        {
            switch (provider)
            {
                case FileConfigurationProvider { Source: { ReloadOnChange: true, FileProvider: PhysicalFileProvider physical } }:
                    // A root such as "/" or "C:\" already ends with its separator (a container without a working
                    // directory of its own watches the whole file system).
                    var folder = Path.EndsInDirectorySeparator(physical.Root) ? physical.Root : physical.Root + Path.DirectorySeparatorChar;
                    if (databasePath.StartsWith(folder, comparison))
                    {
                        return physical.Root;
                    }
                    break;
                case ChainedConfigurationProvider chained when Find(chained.Configuration, databasePath) is { } inner:
                    return inner;
            }
        }
        return null;
    }

    /// <summary>Logs a warning when <see cref="Find"/> finds such a folder.</summary>
    public static void WarnIfWatched(IConfiguration? configuration, string databasePath, ILogger? logger)
    {
        if (logger is not null && Find(configuration, databasePath) is { } folder)
        {
            LogWatched(logger, databasePath, folder);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "The SQLite database {DatabasePath} is inside {Folder}, which this app's configuration watches for changes to its files (reloadOnChange): every write to the database wakes the watcher and costs throughput. Keep the database elsewhere, or read the files once (hostBuilder:reloadConfigOnChange=false, e.g. DOTNET_hostBuilder__reloadConfigOnChange=false).")]
    private static partial void LogWatched(ILogger logger, string databasePath, string folder);
}
