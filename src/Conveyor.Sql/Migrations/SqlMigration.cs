using System.Text.RegularExpressions;

namespace Conveyor.Sql.Migrations;

/// <summary>One numbered migration: the text of <c>Migrations/NNN_name.sql</c> in a backend's assembly.</summary>
/// <param name="Version">The version the database is at once it ran, from 1.</param>
/// <param name="Name">The file's name, such as <c>001_initial.sql</c>.</param>
/// <param name="Sql">The file's text, with <c>{{name}}</c> placeholders left in.</param>
public sealed partial record SqlMigration(int Version, string Name, string Sql)
{
    /// <summary>The text with every <c>{{name}}</c> replaced by its identifier, quoted by the dialect, so that a value can
    /// never end the identifier and run SQL of its own.</summary>
    /// <exception cref="InvalidOperationException">A placeholder with no value: the migration would not run as written.</exception>
    public string Render(SqlDialect dialect, IReadOnlyDictionary<string, string>? identifiers = null)
    {
        ArgumentNullException.ThrowIfNull(dialect);
        return Placeholder().Replace(Sql, match =>
        {
            var name = match.Groups[1].Value;
            if (identifiers is null || !identifiers.TryGetValue(name, out var value))
            {
                throw new InvalidOperationException($"Migration {Name} uses the placeholder {{{{{name}}}}}, which has no value.");
            }
            return dialect.QuoteIdentifier(value);
        });
    }

    [GeneratedRegex(@"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", RegexOptions.CultureInvariant)]
    private static partial Regex Placeholder();
}
