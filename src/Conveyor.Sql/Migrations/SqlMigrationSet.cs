using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;

namespace Conveyor.Sql.Migrations;

/// <summary>
/// A backend's migrations, in order. Files are named <c>NNN_name.sql</c>: three or more digits from 001 with no gaps,
/// then lower-case words. A shipped file is never edited; a change is a new file with the next number.
/// </summary>
public sealed partial class SqlMigrationSet
{
    private SqlMigrationSet(IReadOnlyList<SqlMigration> migrations) => Migrations = migrations;

    /// <summary>The migrations, by version (the first is version 1).</summary>
    public IReadOnlyList<SqlMigration> Migrations { get; }

    /// <summary>The version a database is at once every migration ran.</summary>
    public int LatestVersion => Migrations.Count;

    /// <summary>The migrations embedded in <paramref name="assembly"/> under <paramref name="resourcePrefix"/>
    /// (the csproj gives them the logical name prefix + file name).</summary>
    public static SqlMigrationSet FromResources(Assembly assembly, string resourcePrefix)
    {
        ArgumentNullException.ThrowIfNull(assembly);
        ArgumentException.ThrowIfNullOrEmpty(resourcePrefix);
        var files = new List<KeyValuePair<string, string>>();
        foreach (var resource in assembly.GetManifestResourceNames())
        {
            if (!resource.StartsWith(resourcePrefix, StringComparison.Ordinal) || !resource.EndsWith(".sql", StringComparison.Ordinal))
            {
                continue;
            }
            using var stream = assembly.GetManifestResourceStream(resource)!;
            using var reader = new StreamReader(stream, Encoding.UTF8);
            files.Add(new(resource[resourcePrefix.Length..], reader.ReadToEnd().ReplaceLineEndings("\n")));
        }
        if (files.Count == 0)
        {
            throw new InvalidOperationException($"No migrations are embedded in {assembly.GetName().Name} under '{resourcePrefix}'.");
        }
        return FromFiles(files);
    }

    /// <summary>Migrations from (file name, text) pairs, in any order.</summary>
    /// <exception cref="InvalidOperationException">A name that breaks the rule, a number used twice, or a gap.</exception>
    public static SqlMigrationSet FromFiles(IEnumerable<KeyValuePair<string, string>> files)
    {
        ArgumentNullException.ThrowIfNull(files);
        var byVersion = new SortedDictionary<int, SqlMigration>();
        foreach (var (name, sql) in files)
        {
            var match = FileName().Match(name);
            if (!match.Success)
            {
                throw new InvalidOperationException($"Migration file '{name}' is not named NNN_name.sql (three or more digits, then lower-case words joined by '_').");
            }
            var version = int.Parse(match.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture);
            if (!byVersion.TryAdd(version, new SqlMigration(version, name, sql)))
            {
                throw new InvalidOperationException($"Migrations '{byVersion[version].Name}' and '{name}' have the same number.");
            }
        }
        var expected = 1;
        foreach (var version in byVersion.Keys)
        {
            if (version != expected)
            {
                throw new InvalidOperationException($"Migration {expected:000} is missing: numbers start at 001 and have no gaps (found {byVersion[version].Name}).");
            }
            expected++;
        }
        return new SqlMigrationSet([.. byVersion.Values]);
    }

    /// <summary>The migrations a database at <paramref name="version"/> still needs, oldest first (none when it is up to date).</summary>
    /// <param name="version">The database's version, 0 for an empty one.</param>
    /// <param name="database">Names the database in the error, such as "The SQLite database".</param>
    /// <exception cref="InvalidOperationException">The database is newer than this build knows.</exception>
    public IReadOnlyList<SqlMigration> After(int version, string database)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(version);
        if (version > LatestVersion)
        {
            throw new InvalidOperationException(
                $"{database} is at schema version {version}, newer than this build of Conveyor knows ({LatestVersion}). Upgrade Conveyor.");
        }
        return [.. Migrations.Skip(version)];
    }

    [GeneratedRegex(@"^([0-9]{3,})_[a-z0-9]+(?:_[a-z0-9]+)*\.sql$", RegexOptions.CultureInvariant)]
    private static partial Regex FileName();
}
