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
    [InlineData("a:0")]
    [InlineData("a:-4")]
    public void Weight_below_one_becomes_one(string entry)
    {
        Assert.Equal([new QueueWeight("a", 1)], Parse(entry));
    }

    [Fact]
    public void Colon_not_followed_by_a_number_is_part_of_the_name()
    {
        Assert.Equal([new QueueWeight("tenant:eu", 1)], Parse("tenant:eu"));
    }

    [Fact]
    public void Only_the_last_colon_separates_the_weight()
    {
        Assert.Equal([new QueueWeight("tenant:eu", 4)], Parse("tenant:eu:4"));
    }

    [Fact]
    public void Prefetch_ceiling_is_sixteen_times_concurrency_but_at_least_256_unless_fixed()
    {
        Assert.Equal(256, new WorkerOptions { Concurrency = 4 }.EffectivePrefetch);
        Assert.Equal(512, new WorkerOptions { Concurrency = 32 }.EffectivePrefetch);
        Assert.Equal(7, new WorkerOptions { Concurrency = 32, Prefetch = 7 }.EffectivePrefetch);
    }
}
