using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Logging;

namespace Conveyor.Sqlite;

/// <summary>
/// Whether the app's configuration watches a folder that holds the database. A host built by
/// <c>Host.CreateApplicationBuilder</c> or <c>WebApplication.CreateBuilder</c> reloads appsettings.json on change, and
/// does so by watching its whole content root and every folder under it (inotify on Linux): with the database there,
/// every page the writer puts in the WAL wakes the host's file-watching thread. Measured: about a tenth of a drain's
/// CPU in one process, and a quarter of the throughput of two worker processes on one file (docs/sqlite.md).
/// </summary>
internal static partial class SqliteWatchedFolder
{
    /// <summary>The root of a reloading file source of <paramref name="configuration"/> that contains
    /// <paramref name="databasePath"/> (a full path), or null.</summary>
    public static string? Find(IConfiguration? configuration, string databasePath)
    {
        if (configuration is not IConfigurationRoot root)
        {
            return null;
        }
        var comparison = OperatingSystem.IsWindows() || OperatingSystem.IsMacOS() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        foreach (var provider in root.Providers)
        {
            if (provider is FileConfigurationProvider { Source: { ReloadOnChange: true, FileProvider: PhysicalFileProvider physical } })
            {
                var folder = Path.TrimEndingDirectorySeparator(physical.Root) + Path.DirectorySeparatorChar;
                if (databasePath.StartsWith(folder, comparison))
                {
                    return physical.Root;
                }
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
