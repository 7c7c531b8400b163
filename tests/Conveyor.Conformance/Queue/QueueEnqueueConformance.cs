namespace Conveyor.Conformance;

/// <summary>Queue role: enqueue, single and batch, durability and idempotency keys.</summary>
public abstract class QueueEnqueueConformance<TFactory>() : ConformanceTest(new TFactory())
    where TFactory : IConformanceBackendFactory, new()
{
    [Fact]
    public async Task Enqueue_returns_the_id_created_and_queued()
    {
        var message = NewMessage();

        var result = await EnqueueAsync(message);

        Assert.Equal(new EnqueueResult(message.Id, true, TaskState.Queued), result);
        Assert.Equal(TaskState.Queued, await StateOf(message.Id));
    }

    [Fact]
    public async Task Enqueued_message_is_fetched_with_every_field_it_was_given()
    {
        var message = NewMessage("mail", priority: 7, task: "mail.send") with
        {
            Args = """{"to":"a@example.com","n":3}""",
            ExpiresAt = Now.AddHours(1),
            MaxAttempts = 9,
            Retry = new RetryPolicy(TimeSpan.FromSeconds(2), TimeSpan.FromMinutes(3), 0.1),
            Timeout = TimeSpan.FromSeconds(45),
            IdempotencyKey = "mail-42",
            Headers = new Dictionary<string, string> { ["traceparent"] = "00-abc-def-01", ["root"] = "r1" },
        };
        await EnqueueAsync(message);

        var lease = await FetchOneAsync("mail");

        var fetched = lease.Message;
        Assert.Equal(message.Id, fetched.Id);
        Assert.Equal("mail.send", fetched.Task);
        Assert.Equal("mail", fetched.Queue);
        Assert.Equal(7, fetched.Priority);
        Assert.Equal(message.Args, fetched.Args);
        Assert.Equal(message.ExpiresAt, fetched.ExpiresAt);
        Assert.Equal(9, fetched.MaxAttempts);
        Assert.Equal(message.Retry, fetched.Retry);
        Assert.Equal(message.Timeout, fetched.Timeout);
        Assert.Equal("mail-42", fetched.IdempotencyKey);
        Assert.Equal(message.Headers, fetched.Headers);
        Assert.Equal(message.CreatedAt, fetched.CreatedAt);
    }

    [Theory]
    // Alone (the common case under tracing: 26 bytes in a SQL row), beside others, with tracestate, and forms kept as
    // JSON text because their text would not come back the same from 25 bytes (uppercase hex, another version).
    [InlineData(CanonicalTraceParent, null)]
    [InlineData(CanonicalTraceParent, "root")]
    [InlineData(CanonicalTraceParent, "tracestate")]
    [InlineData("00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01", null)]
    [InlineData("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", null)]
    [InlineData("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-", null)]
    public async Task A_traceparent_comes_back_the_same_from_fetch_and_get_alone_or_beside_other_headers(string traceParent, string? other)
    {
        var headers = new Dictionary<string, string> { ["traceparent"] = traceParent };
        if (other is not null)
        {
            headers[other] = other == "tracestate" ? "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7" : "r1";
        }
        var message = NewMessage() with { Headers = headers };
        await EnqueueAsync(message);

        var fetched = (await FetchOneAsync()).Message;
        var record = await GetAsync(message.Id);

        AssertSameHeaders(headers, fetched.Headers);
        Assert.Equal(traceParent, fetched.Headers!["traceparent"]);
        AssertSameHeaders(headers, record.Headers);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Retry_policy_with_exception_lists_comes_back_whole_from_fetch_and_get_and_the_headers_as_given(bool withHeaders)
    {
        // The lists are stored in reserved headers (RetryHeaders): they come back in the policy, never in the headers.
        var retry = RetryPolicy.Fixed(TimeSpan.FromSeconds(5), jitter: 0)
            .WithRetryOn<TimeoutException>().WithRetryOn(typeof(IOException)) with
        { NeverRetryOn = ["ArgumentException", "Outer+Inner"] };
        var message = NewMessage() with
        {
            Retry = retry,
            Headers = withHeaders ? new Dictionary<string, string> { ["traceparent"] = CanonicalTraceParent } : null,
        };
        await EnqueueAsync(message);

        var fetched = (await FetchOneAsync()).Message;
        var record = await GetAsync(message.Id);

        Assert.Equal(retry, fetched.Retry);
        Assert.Equal(RetryBackoff.Fixed, fetched.Retry.Backoff);
        Assert.Equal(["System.TimeoutException", "System.IO.IOException"], fetched.Retry.RetryOn);
        Assert.Equal(message.Headers, fetched.Headers);
        Assert.Equal(retry, record.Retry);
        Assert.Equal(message.Headers, record.Headers);
    }

    [Fact]
    public async Task Enqueue_many_returns_one_result_per_message_in_order()
    {
        var messages = Enumerable.Range(0, 50).Select(_ => NewMessage()).ToList();
        messages[7] = messages[7] with { NotBefore = Now.AddMinutes(5) };

        var results = await Queue.EnqueueAsync(messages, Timeout);

        Assert.Equal(messages.Select(m => m.Id), results.Select(r => r.Id));
        Assert.All(results, r => Assert.True(r.Created));
        Assert.Equal(TaskState.Scheduled, results[7].State);
        Assert.All(results.Where((_, i) => i != 7), r => Assert.Equal(TaskState.Queued, r.State));
    }

    [Fact]
    public async Task Enqueue_of_an_empty_batch_returns_no_results()
    {
        var results = await Queue.EnqueueAsync([], Timeout);

        Assert.Empty(results);
    }

    [Fact]
    public async Task Enqueue_many_with_a_duplicate_id_stores_none_of_the_batch()
    {
        var first = NewMessage();
        var second = NewMessage();
        var duplicate = NewMessage() with { Id = first.Id };

        await Assert.ThrowsAnyAsync<Exception>(() => Queue.EnqueueAsync([first, second, duplicate], Timeout));

        Assert.Null(await Store.GetAsync(first.Id, Timeout));
        Assert.Null(await Store.GetAsync(second.Id, Timeout));
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task Enqueue_many_whose_id_exists_already_stores_none_of_the_batch()
    {
        var existing = NewMessage();
        await EnqueueAsync(existing);
        var fresh = NewMessage();

        await Assert.ThrowsAnyAsync<Exception>(() => Queue.EnqueueAsync([fresh, existing with { Args = "1" }], Timeout));

        Assert.Null(await Store.GetAsync(fresh.Id, Timeout));
        var stored = await GetAsync(existing.Id);
        Assert.Null(stored.Args);
    }

    [Fact]
    public async Task Enqueue_with_an_existing_idempotency_key_returns_the_existing_task()
    {
        var first = NewMessage() with { IdempotencyKey = "order-1" };
        await EnqueueAsync(first);
        var second = NewMessage() with { IdempotencyKey = "order-1" };

        var result = await EnqueueAsync(second);

        Assert.Equal(new EnqueueResult(first.Id, false, TaskState.Queued), result);
        Assert.Null(await Store.GetAsync(second.Id, Timeout));
        Assert.Single(await FetchAsync());
    }

    [Fact]
    public async Task Enqueue_with_an_existing_idempotency_key_reports_the_existing_tasks_state()
    {
        var first = NewMessage() with { IdempotencyKey = "order-1" };
        await EnqueueAsync(first);
        await SucceedAsync(await FetchOneAsync());

        var result = await EnqueueAsync(NewMessage() with { IdempotencyKey = "order-1" });

        Assert.Equal(new EnqueueResult(first.Id, false, TaskState.Succeeded), result);
    }

    [Fact]
    public async Task Enqueue_many_with_one_idempotency_key_twice_creates_one_task()
    {
        var messages = new[]
        {
            NewMessage() with { IdempotencyKey = "k" },
            NewMessage(),
            NewMessage() with { IdempotencyKey = "k" },
        };

        var results = await Queue.EnqueueAsync(messages, Timeout);

        Assert.Equal(new EnqueueResult(messages[0].Id, true, TaskState.Queued), results[0]);
        Assert.Equal(new EnqueueResult(messages[1].Id, true, TaskState.Queued), results[1]);
        Assert.Equal(new EnqueueResult(messages[0].Id, false, TaskState.Queued), results[2]);
        Assert.Null(await Store.GetAsync(messages[2].Id, Timeout));
        Assert.Equal(2, (await FetchAsync()).Count);
    }

    [Fact]
    public async Task Concurrent_enqueues_with_one_idempotency_key_create_one_task()
    {
        var messages = Enumerable.Range(0, 24).Select(_ => NewMessage() with { IdempotencyKey = "shared" }).ToList();

        // Started together, so that backends that merge concurrent calls into one write get them at once.
        var results = await Task.WhenAll(messages.Select(m => Queue.EnqueueAsync([m], Timeout)));

        var created = results.Select(r => r[0]).Where(r => r.Created).ToList();
        var winner = Assert.Single(created);
        Assert.All(results, r => Assert.Equal(winner.Id, r[0].Id));
        Assert.Single(await FetchAsync());
    }

    [Fact]
    public async Task A_failing_enqueue_does_not_fail_the_calls_made_at_the_same_time()
    {
        var good = Enumerable.Range(0, 24).Select(_ => NewMessage()).ToList();
        var first = NewMessage();
        var bad = new[] { first, NewMessage(), NewMessage() with { Id = first.Id } };

        var calls = good.Take(12).Select(m => Queue.EnqueueAsync([m], Timeout))
            .Append(Queue.EnqueueAsync(bad, Timeout))
            .Concat(good.Skip(12).Select(m => Queue.EnqueueAsync([m], Timeout)))
            .ToList();
        var failing = calls[12];

        await Assert.ThrowsAnyAsync<Exception>(() => failing);
        foreach (var call in calls.Where(c => c != failing))
        {
            Assert.True((await call)[0].Created);
        }
        Assert.Null(await Store.GetAsync(first.Id, Timeout));
        Assert.Null(await Store.GetAsync(bad[1].Id, Timeout));
        var fetched = await FetchAsync(max: 100);
        Assert.Equal(good.Select(m => m.Id).Order(), fetched.Select(l => l.Message.Id).Order());
    }

    [Fact]
    public async Task Different_idempotency_keys_create_different_tasks()
    {
        var a = await EnqueueAsync(NewMessage() with { IdempotencyKey = "a" });
        var b = await EnqueueAsync(NewMessage() with { IdempotencyKey = "b" });

        Assert.True(a.Created);
        Assert.True(b.Created);
        Assert.NotEqual(a.Id, b.Id);
    }

    [Fact]
    public async Task Enqueue_into_a_new_queue_makes_the_queue_known()
    {
        await EnqueueAsync(NewMessage("reports"));

        var queues = await Store.GetQueuesAsync(Timeout);

        var reports = Assert.Single(queues, q => q.Name == "reports");
        Assert.Equal(1, reports.Count(TaskState.Queued));
        Assert.False(reports.Paused);
    }

    [Fact]
    public async Task Enqueue_with_a_past_eta_is_queued_at_once()
    {
        var message = NewMessage() with { NotBefore = Now.AddMinutes(-1) };

        var result = await EnqueueAsync(message);

        Assert.Equal(TaskState.Queued, result.State);
        Assert.Equal(message.Id, (await FetchOneAsync()).Message.Id);
    }
}
