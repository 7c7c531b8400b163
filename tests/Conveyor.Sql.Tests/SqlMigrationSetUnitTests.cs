using Conveyor.Sql.Migrations;
using Conveyor.Sqlite;

namespace Conveyor.Sql.Tests;

public class SqlMigrationSetUnitTests
{
    private static SqlMigrationSet Set(params string[] names) =>
        SqlMigrationSet.FromFiles(names.Select(n => new KeyValuePair<string, string>(n, "-- " + n)));

    [Fact]
    public void Migrations_are_ordered_by_their_number_not_by_the_order_found()
    {
        var set = Set("010_ten.sql", "002_two.sql", "001_initial.sql", "003_three.sql", "004_a.sql", "005_b.sql",
            "006_c.sql", "007_d.sql", "008_e.sql", "009_f.sql");
        Assert.Equal(10, set.LatestVersion);
        Assert.Equal(Enumerable.Range(1, 10), set.Migrations.Select(m => m.Version));
        Assert.Equal("010_ten.sql", set.Migrations[9].Name);
    }

    [Theory]
    [InlineData("001_initial.sql", "003_three.sql")]
    [InlineData("002_two.sql")]
    [InlineData("001_initial.sql", "001_again.sql")]
    [InlineData("1_initial.sql")]
    [InlineData("001-initial.sql")]
    [InlineData("001_Initial.sql")]
    [InlineData("001_initial.up.sql")]
    public void A_set_that_breaks_the_numbering_rule_is_refused(params string[] names) =>
        Assert.Throws<InvalidOperationException>(() => Set(names));

    [Fact]
    public void A_database_gets_only_the_migrations_after_its_version()
    {
        var set = Set("001_initial.sql", "002_two.sql", "003_three.sql");
        Assert.Equal([1, 2, 3], set.After(0, "db").Select(m => m.Version));
        Assert.Equal([3], set.After(2, "db").Select(m => m.Version));
        Assert.Empty(set.After(3, "db"));
    }

    [Fact]
    public void A_database_newer_than_the_build_is_refused_with_both_versions()
    {
        var error = Assert.Throws<InvalidOperationException>(() => Set("001_initial.sql").After(4, "The test database"));
        Assert.Equal("The test database is at schema version 4, newer than this build of Conveyor knows (1). Upgrade Conveyor.", error.Message);
    }

    [Fact]
    public void Placeholders_become_quoted_identifiers()
    {
        var migration = new SqlMigration(1, "001_initial.sql", "CREATE TABLE {{schema}}.t (); CREATE INDEX i ON {{ schema }}.t (x);");
        var sql = migration.Render(SqliteDialect.Instance, new Dictionary<string, string> { ["schema"] = "con\"veyor" });
        Assert.Equal("CREATE TABLE \"con\"\"veyor\".t (); CREATE INDEX i ON \"con\"\"veyor\".t (x);", sql);
    }

    [Fact]
    public void A_placeholder_without_a_value_is_refused()
    {
        var migration = new SqlMigration(1, "001_initial.sql", "CREATE TABLE {{schema}}.t ();");
        var error = Assert.Throws<InvalidOperationException>(() => migration.Render(SqliteDialect.Instance));
        Assert.Contains("{{schema}}", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_backends_embed_contiguous_migrations()
    {
        var sqlite = SqlMigrationSet.FromResources(typeof(SqliteBackend).Assembly, "Conveyor.Sqlite.Migrations.");
        Assert.Equal("001_initial.sql", sqlite.Migrations[0].Name);
        Assert.True(sqlite.LatestVersion >= 2);
        Assert.Throws<InvalidOperationException>(() => SqlMigrationSet.FromResources(typeof(SqliteBackend).Assembly, "Conveyor.Nothing."));
    }
}
