using System.Text.Json.Nodes;

namespace Conveyor.Testing.Tests;

public sealed class AssertionTests
{
    private static ConveyorTestHarness Create() => ConveyorTestHarness.Create(_ => { });

    [Fact]
    public async Task Args_match_as_JSON_whatever_the_property_order_and_number_form()
    {
        await using var harness = Create();
        await harness.Client.EnqueueAsync(new TaskRequest("flights.score", """{"route":"LHR-JFK","flightId":1,"legs":[1,2.50]}"""));

        harness.AssertEnqueued("flights.score", new { flightId = 1, legs = new[] { 1.0, 2.5 }, route = "LHR-JFK" });
        harness.RequireEnqueued("flights.score", JsonNode.Parse("""{"legs":[1.0,2.5],"route":"LHR-JFK","flightId":1.0}"""));
    }

    [Fact]
    public async Task Args_that_differ_in_any_value_do_not_match()
    {
        await using var harness = Create();
        await harness.Client.EnqueueAsync("flights.score", new FlightArgs(1, "LHR-JFK"));

        Assert.Throws<EnqueuedTaskAssertionException>(() => harness.AssertEnqueued("flights.score", new FlightArgs(1, "LHR-CDG")));
        Assert.Throws<EnqueuedTaskAssertionException>(() => harness.AssertEnqueued("flights.score", new { flightId = 1 }));
        Assert.Throws<EnqueuedTaskAssertionException>(() => harness.AssertEnqueued("flights.score", new { flightId = "1", route = "LHR-JFK" }));
        harness.AssertEnqueued("flights.score", new FlightArgs(1, "LHR-JFK"));
    }

    [Fact]
    public async Task A_failed_assertion_says_what_was_expected_and_lists_what_was_enqueued()
    {
        await using var harness = Create();
        await harness.Client.EnqueueAsync("flights.score", new FlightArgs(2));
        await harness.Client.EnqueueAsync("mail.send", new { to = "ops@example.com" }, new EnqueueOptions { Queue = "mail" });

        var error = Assert.Throws<EnqueuedTaskAssertionException>(() => harness.AssertEnqueued("flights.score", new { flightId = 1 }, queue: "default"));

        Assert.Equal(
            """
            Expected task 'flights.score' with args {"flightId":1} in queue 'default' to have been enqueued, but none matched.
            Enqueued (2):
              flights.score queue=default state=queued args={"flightId":2,"route":null}
              mail.send queue=mail state=queued args={"to":"ops@example.com"}
            """.ReplaceLineEndings("\n"),
            error.Message.ReplaceLineEndings("\n"));
    }

    [Fact]
    public async Task A_failed_assertion_on_an_empty_backend_says_nothing_was_enqueued()
    {
        await using var harness = Create();

        var error = Assert.Throws<EnqueuedTaskAssertionException>(() => harness.RequireEnqueued("flights.score"));

        Assert.EndsWith("Nothing was enqueued.", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Queue_and_predicate_narrow_the_match()
    {
        await using var harness = Create();
        await harness.Client.EnqueueAsync("mail.send", new { to = "a" }, new EnqueueOptions { Queue = "mail", Priority = 3 });

        harness.RequireEnqueued("mail.send", queue: "mail", where: t => t.Priority == 3);
        Assert.Throws<EnqueuedTaskAssertionException>(() => harness.RequireEnqueued("mail.send", queue: "default"));
        var error = Assert.Throws<EnqueuedTaskAssertionException>(() => harness.RequireEnqueued("mail.send", where: t => t.Priority > 5));
        Assert.Contains("matching the predicate", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Require_returns_the_one_match_and_fails_when_several_match()
    {
        await using var harness = Create();
        var first = await harness.Client.EnqueueAsync("flights.score", new FlightArgs(1));

        Assert.Equal(first.Id, harness.RequireEnqueued("flights.score").Id);

        await harness.Client.EnqueueAsync("flights.score", new FlightArgs(2));
        var error = Assert.Throws<EnqueuedTaskAssertionException>(() => harness.RequireEnqueued("flights.score"));
        Assert.Contains("but 2 matched", error.Message, StringComparison.Ordinal);
        Assert.Equal(2, harness.AssertEnqueued("flights.score").Count);
    }

    [Fact]
    public async Task Assert_not_enqueued_fails_when_one_matches()
    {
        await using var harness = Create();
        await harness.Client.EnqueueAsync("flights.score", new FlightArgs(1));

        harness.AssertNotEnqueued("flights.score", new FlightArgs(2));
        harness.AssertNotEnqueued("flights.fetch");
        var error = Assert.Throws<EnqueuedTaskAssertionException>(() => harness.AssertNotEnqueued("flights.score", new FlightArgs(1)));
        Assert.StartsWith("Expected no task 'flights.score'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Assertions_work_on_a_backend_resolved_from_any_container()
    {
        var backend = new InMemoryBackend();
        await backend.EnqueueAsync([new TaskMessage { Id = Guid.CreateVersion7(), Task = "x", Args = "[1,2]", CreatedAt = DateTimeOffset.UtcNow }], CancellationToken.None);

        backend.RequireEnqueued("x", new[] { 1, 2 });
        Assert.Throws<EnqueuedTaskAssertionException>(() => backend.RequireEnqueued("x", new[] { 2, 1 }));
    }
}
