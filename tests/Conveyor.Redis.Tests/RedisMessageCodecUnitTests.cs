namespace Conveyor.Redis.Tests;

public sealed class RedisMessageCodecUnitTests
{
    [Theory]
    [InlineData("00-abc-def-01")]
    // Kept in StoredHeaders' compact text form, which starts with the codec's null mark: inside a value, it must not matter.
    [InlineData("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
    public void A_message_survives_the_round_trip_whatever_its_text_holds(string traceParent)
    {
        var message = new TaskMessage
        {
            Id = Guid.CreateVersion7(),
            Task = "reports.build",
            Queue = "tenant:eu",
            Priority = -100,
            // Lengths count UTF-16 units: separators, digits and non-ASCII text inside a value must not confuse the split.
            Args = "{\"note\":\"12:~ 日本語 🚚\",\"n\":[1,2]}",
            MaxAttempts = 9,
            Retry = new RetryPolicy(TimeSpan.FromMilliseconds(250), TimeSpan.FromMinutes(3), 0.125),
            Timeout = TimeSpan.FromSeconds(42),
            IdempotencyKey = "~:3:",
            Headers = new Dictionary<string, string> { ["traceparent"] = traceParent, ["x"] = "~" },
            CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(1_795_411_249_358),
        };
        var notBefore = DateTimeOffset.FromUnixTimeMilliseconds(1_795_411_250_000);

        var encoded = RedisMessageCodec.Encode(message);
        var decoded = RedisMessageCodec.Decode(encoded, message.Id, notBefore, null);

        // The canonical context in StoredHeaders' compact text (35 characters, then the other header's JSON), the other as JSON.
        Assert.Contains(traceParent.Length == 55 ? "44:~" : "{\"traceparent\":", encoded, StringComparison.Ordinal);

        Assert.Equal(message with { NotBefore = notBefore, Headers = null }, decoded with { Headers = null });
        Assert.Equal(message.Headers.OrderBy(h => h.Key, StringComparer.Ordinal), decoded.Headers!.OrderBy(h => h.Key, StringComparer.Ordinal));
    }

    [Fact]
    public void Absent_optional_fields_come_back_absent()
    {
        var message = new TaskMessage { Id = Guid.CreateVersion7(), Task = "t", CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(1) };

        var decoded = RedisMessageCodec.Decode(RedisMessageCodec.Encode(message), message.Id, null, null);

        Assert.Equal(message, decoded);
        Assert.Null(decoded.Args);
        Assert.Null(decoded.Timeout);
        Assert.Null(decoded.IdempotencyKey);
        Assert.Null(decoded.Headers);
    }

    [Fact]
    public void A_hash_from_an_earlier_layout_fails_with_a_message_that_says_so()
    {
        var id = Guid.CreateVersion7();

        var missing = Assert.Throws<FormatException>(() => RedisMessageCodec.Decode(null, id, null, null));
        var truncated = Assert.Throws<FormatException>(() => RedisMessageCodec.Decode("4:task7:def", id, null, null));

        var overlong = Assert.Throws<FormatException>(() => RedisMessageCodec.Decode("4:task99:x", id, null, null));
        var garbage = Assert.Throws<FormatException>(() => RedisMessageCodec.Decode("{\"task\":\"t\"}", id, null, null));

        Assert.Contains("earlier key layout", missing.Message, StringComparison.Ordinal);
        Assert.All([truncated, overlong, garbage], e => Assert.Contains("not written by this version", e.Message, StringComparison.Ordinal));
    }

    [Fact]
    public void Messages_decoded_together_share_the_fields_they_repeat_and_equal_those_decoded_alone()
    {
        const string traceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        var first = Message("emails.send", "default", traceParent, TimeSpan.FromSeconds(1));
        var same = Message("emails.send", "default", traceParent, TimeSpan.FromSeconds(1));
        // Another task, queue, trace and policy; then one without headers; then the first's fields again.
        var other = Message("reports.build", "tenant:eu", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", TimeSpan.FromSeconds(2));
        var bare = Message("reports.build", "tenant:eu", null, TimeSpan.FromSeconds(2));
        var again = Message("emails.send", "default", traceParent, TimeSpan.FromSeconds(1));
        TaskMessage[] messages = [first, same, other, bare, again];

        var shared = default(RedisMessageCodec.SharedFields);
        var decoded = messages.Select(m => DecodeShared(m, ref shared)).ToArray();

        for (var i = 0; i < messages.Length; i++)
        {
            var alone = RedisMessageCodec.Decode(RedisMessageCodec.Encode(messages[i]), messages[i].Id, null, null);
            Assert.Equal(alone with { Headers = null }, decoded[i] with { Headers = null });
            Assert.Equal(alone.Headers?.OrderBy(h => h.Key, StringComparer.Ordinal), decoded[i].Headers?.OrderBy(h => h.Key, StringComparer.Ordinal));
        }
        Assert.Same(decoded[0].Task, decoded[1].Task);
        Assert.Same(decoded[0].Queue, decoded[1].Queue);
        Assert.Same(decoded[0].Retry, decoded[1].Retry);
        Assert.Same(decoded[0].Headers, decoded[1].Headers);
        Assert.NotSame(decoded[1].Headers, decoded[2].Headers);
        Assert.NotSame(decoded[1].Retry, decoded[2].Retry);
        Assert.Equal(traceParent, decoded[1].Headers!["traceparent"]);
        Assert.Equal("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", decoded[2].Headers!["traceparent"]);
        Assert.Null(decoded[3].Headers);
        Assert.Equal(traceParent, decoded[4].Headers!["traceparent"]);

        static TaskMessage DecodeShared(TaskMessage message, ref RedisMessageCodec.SharedFields shared) =>
            RedisMessageCodec.Decode(RedisMessageCodec.Encode(message), message.Id, null, null, null, ref shared);

        static TaskMessage Message(string task, string queue, string? traceParent, TimeSpan retryBase) => new()
        {
            Id = Guid.CreateVersion7(),
            Task = task,
            Queue = queue,
            Args = "{}",
            Retry = new RetryPolicy(retryBase, TimeSpan.FromMinutes(10)),
            Headers = traceParent is null ? null : new Dictionary<string, string> { ["traceparent"] = traceParent },
            CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(1_795_411_249_358),
        };
    }
}
