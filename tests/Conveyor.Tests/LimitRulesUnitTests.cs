using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Tests;

public sealed class LimitRulesUnitTests
{
    [Theory]
    [InlineData("10/s", 10, 1, 100_000)]
    [InlineData("10/m", 10, 60, 6_000_000)]
    [InlineData("100/h", 100, 3600, 36_000_000)]
    [InlineData("1000000/s", 1_000_000, 1, 1)]
    [InlineData("7/h", 7, 3600, 514_285_714)]
    public void Rate_reads_N_per_second_minute_or_hour_as_evenly_spaced_starts(string text, long count, int periodSeconds, long intervalMicroseconds)
    {
        var rate = RateLimit.Parse(text);

        Assert.Equal(count, rate.Count);
        Assert.Equal(TimeSpan.FromSeconds(periodSeconds), rate.Period);
        Assert.Equal(intervalMicroseconds, Backends.LimitTimes.IntervalMicroseconds(rate.Interval));
        Assert.Equal(text, rate.ToString());
    }

    [Theory]
    [InlineData("10/x")]
    [InlineData("10/sec")]
    [InlineData("10")]
    [InlineData("/s")]
    [InlineData("0/s")]
    [InlineData("-1/s")]
    [InlineData(" 10/s")]
    [InlineData("1.5/s")]
    [InlineData("1000001/s")]
    [InlineData("")]
    public void Anything_else_is_not_a_rate(string text)
    {
        Assert.False(RateLimit.TryParse(text, out _));
        var error = Assert.Throws<FormatException>(() => RateLimit.Parse(text));
        Assert.Contains("'N/s', 'N/m' or 'N/h'", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"tenant":"a"}""", "tenant", "a")]
    [InlineData("""{"Tenant":"a"}""", "tenant", "a")]
    [InlineData("""{"target":{"host":"example.org"}}""", "target.host", "example.org")]
    [InlineData("""{"tenant":42}""", "tenant", "42")]
    [InlineData("""{"tenant":{"id":1}}""", "tenant", """{"id":1}""")]
    [InlineData("""{"tenant":null}""", "tenant", null)]
    [InlineData("""{"other":"a"}""", "tenant", null)]
    [InlineData("""{"target":"x"}""", "target.host", null)]
    [InlineData("[1]", "tenant", null)]
    public void Key_path_reads_a_property_of_the_arguments(string args, string path, string? expected)
    {
        Assert.Equal(expected, LimitRules.ReadPath(args, path.Split('.')));
    }

    [Fact]
    public void Key_path_from_configuration_replaces_the_registrations_key_function()
    {
        var rules = Build([LimitRule.ForTask("t", concurrencyKey: "tenant")], t =>
        {
            t.ConcurrencyLimit = 2;
            t.ConcurrencyKey = _ => "from-code";
        });

        Assert.Equal(["task:t#from-config"], ConcurrencyKeys(rules, """{"tenant":"from-config"}"""));
    }

    [Fact]
    public void Tasks_whose_key_cannot_be_read_share_one_key()
    {
        var byPath = Build([LimitRule.ForTask("t", concurrency: 2, concurrencyKey: "tenant")]);
        var throwing = Build([], t =>
        {
            t.ConcurrencyLimit = 2;
            t.ConcurrencyKey = m => m.Args!.Length > 100 ? "long" : throw new InvalidOperationException("no key");
        });

        Assert.Equal(["task:t#"], ConcurrencyKeys(byPath, "not json"));
        Assert.Equal(["task:t#"], ConcurrencyKeys(byPath, null));
        Assert.Equal(["task:t#"], ConcurrencyKeys(throwing, "{}"));
    }

    [Fact]
    public void Queue_and_task_limits_both_apply_queue_first()
    {
        var rules = Build([LimitRule.ForQueue("default", rate: "1/s", concurrency: 5), LimitRule.ForTask("t", concurrency: 2)]);
        var rates = new List<RateKey>();
        var concurrency = new List<ConcurrencyKey>();

        rules.Match(Message("{}"), rates, concurrency);

        Assert.Equal([new RateKey("queue:default", TimeSpan.FromSeconds(1))], rates);
        Assert.Equal([new ConcurrencyKey("queue:default", 5, "queue:default"), new ConcurrencyKey("task:t", 2, "task:t")], concurrency);
    }

    [Fact]
    public void Description_lists_each_limit_and_recognises_its_keys()
    {
        var options = new ConveyorOptions();
        options.Limits.Add(LimitRule.ForTask("t", concurrency: 2, concurrencyKey: "tenant"));
        options.Limits.Add(LimitRule.ForQueue("default", rate: "1/s"));

        var limits = LimitDescription.Describe(options, new TaskRegistry());

        Assert.Equal(
            [new LimitDescription("queue:default", null, "default", "1/s", null, null), new LimitDescription("task:t", "t", null, null, 2, "tenant")],
            limits);
        Assert.True(limits[1].Owns("task:t#a"));
        Assert.True(limits[1].Owns("task:t"));
        Assert.False(limits[1].Owns("task:tt#a"));
        Assert.Equal("a#b", limits[1].KeyOf("task:t#a#b"));
        Assert.Equal("", limits[1].KeyOf("task:t#"));
    }

    private static LimitRules Build(List<LimitRule> configured, Action<TaskDefaults>? registration = null)
    {
        var services = new ServiceCollection();
        var builder = services.AddConveyor();
        if (registration is not null)
        {
            builder.AddTask<NoopTask>("t", registration);
        }
        return LimitRules.Build(configured, builder.Registry);
    }

    private static TaskMessage Message(string? args) =>
        new() { Id = Guid.NewGuid(), Task = "t", Args = args, CreatedAt = DateTimeOffset.UtcNow };

    private static List<string> ConcurrencyKeys(LimitRules rules, string? args)
    {
        var concurrency = new List<ConcurrencyKey>();
        rules.Match(Message(args), [], concurrency);
        return [.. concurrency.Select(c => c.Key)];
    }
}
