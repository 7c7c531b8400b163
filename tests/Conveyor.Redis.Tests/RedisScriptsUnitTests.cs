using System.Reflection;

namespace Conveyor.Redis.Tests;

public class RedisScriptsUnitTests
{
    private static readonly List<(string Name, string Text)> Scripts =
        [.. typeof(RedisScripts).GetFields(BindingFlags.Public | BindingFlags.Static)
            .Where(f => f.FieldType == typeof(string))
            .Select(f => (f.Name, (string)f.GetValue(null)!))];

    private static readonly List<string> Files =
        [.. typeof(RedisScripts).Assembly.GetManifestResourceNames()
            .Where(n => n.StartsWith("Conveyor.Redis.Scripts.", StringComparison.Ordinal) && n.EndsWith(".lua", StringComparison.Ordinal))
            .Select(n => n["Conveyor.Redis.Scripts.".Length..])];

    [Fact]
    public void Every_script_is_the_prelude_then_its_files_without_the_final_newline()
    {
        var prelude = RedisScripts.Fragment("prelude.lua");
        Assert.Equal(33, Scripts.Count);
        foreach (var (name, text) in Scripts)
        {
            Assert.StartsWith(prelude, text, StringComparison.Ordinal);
            Assert.False(text.EndsWith('\n'), name);
            Assert.DoesNotContain('\r', text);
            Assert.True(text.Length > prelude.Length, name);
        }
    }

    [Fact]
    public void Every_embedded_file_is_part_of_a_script()
    {
        Assert.Contains("prelude.lua", Files);
        foreach (var file in Files)
        {
            var body = RedisScripts.Fragment(file).TrimEnd('\n');
            Assert.True(Scripts.Any(s => s.Text.Contains(body, StringComparison.Ordinal)), $"Scripts/{file} is embedded but no script uses it");
        }
    }

    [Fact]
    public void A_file_that_is_not_embedded_fails_with_its_name()
    {
        var error = Assert.Throws<InvalidOperationException>(() => RedisScripts.Fragment("no_such_script.lua"));
        Assert.Contains("no_such_script.lua", error.Message, StringComparison.Ordinal);
    }
}
