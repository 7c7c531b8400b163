namespace Conveyor.Conformance;

/// <summary>For the backends that read a fetch's tasks together (SQLite, PostgreSQL, Redis): the tasks of one enqueue
/// carry the same headers (its trace context), and a fetch parses them once for a run of tasks that repeat them rather
/// than once a task. Sharing is safe because headers are read-only; each task still reads back exactly its own.</summary>
public abstract class FetchSharedHeadersConformance<TFactory>() : ConformanceTest(new TFactory())
    where TFactory : IConformanceBackendFactory, new()
{
    [Fact]
    public async Task Tasks_of_one_fetch_with_the_same_headers_share_them_and_tasks_with_others_read_their_own()
    {
        const string otherTraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        var traced = Enumerable.Range(0, 6).Select(_ => NewMessage() with { Headers = Trace(CanonicalTraceParent) }).ToArray();
        await Queue.EnqueueAsync(traced, Timeout);

        var first = await FetchAsync(traced.Length);

        Assert.Equal(traced.Length, first.Count);
        Assert.All(first, l => AssertSameHeaders(traced[0].Headers, l.Message.Headers));
        Assert.All(first, l => Assert.Same(first[0].Message.Headers, l.Message.Headers));

        // Another enqueue's context, one task with a header more, one with none, and, with that context too, one with
        // other retry delays and one whose policy lists the exceptions it retries (kept in reserved headers beside the
        // context), fetched together: whatever the order the backend reads them in, each reads back its own.
        var mixed = Enumerable.Range(0, 3).Select(_ => NewMessage() with { Headers = Trace(otherTraceParent) })
            .Append(NewMessage() with { Headers = new Dictionary<string, string> { ["traceparent"] = otherTraceParent, ["a"] = "1" } })
            .Append(NewMessage())
            .Append(NewMessage() with { Headers = Trace(otherTraceParent), Retry = new RetryPolicy(TimeSpan.FromSeconds(3), TimeSpan.FromMinutes(7), 0.5) })
            .Append(NewMessage() with { Headers = Trace(otherTraceParent), Retry = RetryPolicy.Default with { RetryOn = ["System.TimeoutException"] } })
            .Append(NewMessage() with { Headers = Trace(otherTraceParent) })
            .ToArray();
        await Queue.EnqueueAsync(mixed, Timeout);

        var second = await FetchAsync(mixed.Length);

        Assert.Equal(mixed.Length, second.Count);
        foreach (var lease in second)
        {
            var enqueued = mixed.Single(m => m.Id == lease.Message.Id);
            AssertSameHeaders(enqueued.Headers, lease.Message.Headers);
            Assert.Equal(enqueued.Retry.BaseDelay, lease.Message.Retry.BaseDelay);
            Assert.Equal(enqueued.Retry.MaxDelay, lease.Message.Retry.MaxDelay);
            Assert.Equal(enqueued.Retry.Jitter, lease.Message.Retry.Jitter);
            Assert.Equal(enqueued.Retry.RetryOn, lease.Message.Retry.RetryOn);
            Assert.Equal(enqueued.Retry.NeverRetryOn, lease.Message.Retry.NeverRetryOn);
        }
        Assert.DoesNotContain(second, l => ReferenceEquals(l.Message.Headers, first[0].Message.Headers));

        static Dictionary<string, string> Trace(string traceParent) => new() { ["traceparent"] = traceParent };
    }

    [Fact]
    public async Task Tasks_of_one_fetch_with_the_same_retry_policy_share_one_instance_of_it()
    {
        // Not the default: an enqueue's own policy, which every task it made stores.
        var policy = new RetryPolicy(TimeSpan.FromSeconds(3), TimeSpan.FromMinutes(7), 0.5);
        var messages = Enumerable.Range(0, 4).Select(_ => NewMessage() with { Retry = policy }).ToArray();
        await Queue.EnqueueAsync(messages, Timeout);

        var leases = await FetchAsync(messages.Length);

        Assert.Equal(messages.Length, leases.Count);
        Assert.All(leases, l => Assert.Equal((policy.BaseDelay, policy.MaxDelay, policy.Jitter), (l.Message.Retry.BaseDelay, l.Message.Retry.MaxDelay, l.Message.Retry.Jitter)));
        Assert.All(leases, l => Assert.Same(leases[0].Message.Retry, l.Message.Retry));
    }
}
