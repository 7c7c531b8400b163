using Conveyor.Backends;

namespace Conveyor.Tests;

public sealed class WorkerOptionsUnitTests
{
    private static IReadOnlyList<QueueWeight> Parse(params string[] entries)
    {
        var options = new WorkerOptions();
        foreach (var entry in entries)
        {
            options.Queues.Add(entry);
        }
        return options.ParseQueues();
    }

    [Fact]
    public void No_queues_means_the_default_queue()
    {
        Assert.Equal([new QueueWeight("default", 1)], Parse());
    }

    [Fact]
    public void Queue_without_a_weight_has_weight_one()
    {
        Assert.Equal([new QueueWeight("mail", 1)], Parse("mail"));
    }

    [Fact]
    public void Queue_with_a_weight_after_a_colon_takes_that_weight()
    {
        Assert.Equal([new QueueWeight("mail", 3), new QueueWeight("reports", 1)], Parse("mail:3", "reports"));
    }

    [Fact]
    public void Entries_may_list_many_queues_separated_by_commas()
    {
        Assert.Equal(
            [new QueueWeight("a", 5), new QueueWeight("b", 1), new QueueWeight("c", 2)],
            Parse(" a:5 , b,,c:2 "));
    }

    [Theory]
    [InlineData("a:0", "'a:0' has weight '0'")]
    [InlineData("a:-4", "'a:-4' has weight '-4'")]
    [InlineData("high:ten", "'high:ten' has weight 'ten'")]
    [InlineData("reports:2024", "'reports:2024' has weight '2024' (queue 'reports')")]
    [InlineData("a b", "'a b' does not name a valid queue")]
    [InlineData(":3", "':3' does not name a valid queue")]
    public void Entry_that_is_not_a_queue_and_weight_is_refused_naming_it(string entry, string expected)
    {
        var error = Assert.Throws<FormatException>(() => Parse(entry));

        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
        Assert.Contains("Conveyor:Worker:Queues", error.Message, StringComparison.Ordinal);
        Assert.Contains("from 1 to 100", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Queue_listed_twice_is_refused() =>
        Assert.Contains("'mail' more than once", Assert.Throws<FormatException>(() => Parse("mail:2,mail")).Message, StringComparison.Ordinal);

    [Fact]
    public void Entries_of_only_commas_list_no_queue() =>
        Assert.Contains("lists no queue", Assert.Throws<FormatException>(() => Parse(" , ")).Message, StringComparison.Ordinal);

    [Fact]
    public void Prefetch_ceiling_is_sixteen_times_concurrency_but_at_least_256_unless_fixed()
    {
        Assert.Equal(256, new WorkerOptions { Concurrency = 4 }.EffectivePrefetch);
        Assert.Equal(512, new WorkerOptions { Concurrency = 32 }.EffectivePrefetch);
        Assert.Equal(7, new WorkerOptions { Concurrency = 32, Prefetch = 7 }.EffectivePrefetch);
    }
}
