using Conveyor.Backends;

namespace Conveyor.Tests;

public sealed class QueueOrderUnitTests
{
    private static FetchRequest Request(bool strict, params QueueWeight[] queues) => new()
    {
        WorkerId = "w",
        Queues = queues,
        MaxCount = 1,
        LeaseDuration = TimeSpan.FromSeconds(30),
        StrictOrder = strict,
    };

    [Fact]
    public void Strict_order_keeps_the_queues_as_given()
    {
        var request = Request(true, new("a", 1), new("b", 100), new("c", 1));

        for (var i = 0; i < 100; i++)
        {
            Assert.Equal(["a", "b", "c"], QueueOrder.For(request, new Random(i)).Select(q => q.Name));
        }
    }

    [Fact]
    public void Weighted_order_starts_with_each_queue_in_proportion_to_its_weight()
    {
        var request = Request(false, new("a", 1), new("b", 3));
        var random = new Random(42);

        var firsts = Enumerable.Range(0, 4000).Select(_ => QueueOrder.For(request, random)[0].Name).ToList();

        Assert.InRange(firsts.Count(n => n == "b"), 2800, 3200);
    }

    [Fact]
    public void Weighted_order_takes_the_other_queues_in_turn_after_the_first()
    {
        var request = Request(false, new("a", 1), new("b", 1), new("c", 1));
        var random = new Random(7);

        var orders = Enumerable.Range(0, 300).Select(_ => string.Concat(QueueOrder.For(request, random).Select(q => q.Name))).ToHashSet();

        Assert.Equal(["abc", "bca", "cab"], orders.Order());
    }

    [Fact]
    public void One_queue_is_returned_as_it_is()
    {
        var request = Request(false, new QueueWeight("only", 9));

        Assert.Equal(["only"], QueueOrder.For(request).Select(q => q.Name));
    }

    [Fact]
    public void Weights_below_one_count_as_one()
    {
        var request = Request(false, new("a", 0), new("b", -5));
        var random = new Random(11);

        var firsts = Enumerable.Range(0, 1000).Select(_ => QueueOrder.For(request, random)[0].Name).ToList();

        Assert.Contains("a", firsts);
        Assert.Contains("b", firsts);
    }
}
