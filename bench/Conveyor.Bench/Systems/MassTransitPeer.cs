using System.Diagnostics;
using System.Globalization;
using Conveyor.Redis;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using RabbitMQ.Client;
using StackExchange.Redis;

namespace Conveyor.Bench.Systems;

/// <summary>The no-op message of the MassTransit peer.</summary>
public sealed record MtNoop;

/// <summary>The probe message of the MassTransit peer: the producer's Stopwatch timestamp and whether it counts.</summary>
public sealed record MtProbe(long T, bool M);

/// <summary>Does the common instrument's <c>INCR</c>.</summary>
internal sealed class MtNoopConsumer(IConnectionMultiplexer redis, PeerKeys keys) : IConsumer<MtNoop>
{
    public Task Consume(ConsumeContext<MtNoop> context) => redis.GetDatabase().StringIncrementAsync(keys.Counter);
}

/// <summary>Appends <c>"m latency_ns"</c> to the samples list, as every peer's probe does.</summary>
internal sealed class MtProbeConsumer(IConnectionMultiplexer redis, PeerKeys keys) : IConsumer<MtProbe>
{
    public Task Consume(ConsumeContext<MtProbe> context)
    {
        var started = Stopwatch.GetTimestamp();
        var nanoseconds = (started - context.Message.T) * (1_000_000_000.0 / Stopwatch.Frequency);
        return redis.GetDatabase().ListRightPushAsync(keys.Samples,
            string.Create(CultureInfo.InvariantCulture, $"{(context.Message.M ? 1 : 0)} {nanoseconds:0}"));
    }
}

/// <summary>The instrument's keys (<c>PEER_COUNTER</c>, <c>PEER_SAMPLES</c>).</summary>
internal sealed record PeerKeys(string Counter, string Samples);

/// <summary>
/// The hidden <c>__masstransit</c> command: MassTransit 8.5 on RabbitMQ as a peer, speaking the line protocol of
/// bench/peers/README.md as the script peers do, in a process of its own. A receive endpoint on a fresh queue with
/// <c>PrefetchCount</c> 64 (and MassTransit's default concurrent message limit, the prefetch count), publisher confirms on,
/// every other setting at its default; the producer sends to <c>queue:name</c> with <see cref="ISendEndpoint.Send{T}(T, CancellationToken)"/>.
/// </summary>
internal static class MassTransitPeer
{
    public const string Command = "__masstransit";

    public static async Task<int> RunAsync(string command, string[] arguments, CancellationToken ct)
    {
        var url = new Uri(Required("PEER_URL"));
        var queue = Required("PEER_NAME");
        var worker = command == "worker";
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Logging.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace)
            .SetMinimumLevel(Enum.Parse<LogLevel>(Environment.GetEnvironmentVariable("PEER_LOG_LEVEL") ?? "Warning"));
        // Start the bus before the host's start returns (MassTransit's default does not wait), so that `ready` means consuming.
        builder.Services.AddOptions<MassTransitHostOptions>().Configure(o => o.WaitUntilStarted = true);
        builder.Services.AddSingleton(new PeerKeys(Required("PEER_COUNTER"), Required("PEER_SAMPLES")));
        // Connected before the bus starts: a synchronous connect inside the first consumers' resolution blocks the thread pool
        // (64 consumers at once) and stalled the first deliveries by 15 s.
        await using var redis = await ConnectionMultiplexer.ConnectAsync(RedisUrl.Parse(Required("PEER_REDIS")));
        builder.Services.AddSingleton<IConnectionMultiplexer>(redis);
        builder.Services.AddMassTransit(x =>
        {
            if (worker)
            {
                x.AddConsumer<MtNoopConsumer>();
                x.AddConsumer<MtProbeConsumer>();
            }
            x.UsingRabbitMq((context, cfg) =>
            {
                var user = Uri.UnescapeDataString(url.UserInfo.Split(':')[0]);
                var password = Uri.UnescapeDataString(url.UserInfo.Split(':').ElementAtOrDefault(1) ?? "");
                var vhost = url.AbsolutePath.Trim('/') is { Length: > 0 } path ? Uri.UnescapeDataString(path) : "/";
                cfg.Host(url.Host, (ushort)(url.Port > 0 ? url.Port : 5672), vhost, h =>
                {
                    h.Username(user);
                    h.Password(password);
                    h.PublisherConfirmation = true;
                });
                if (worker)
                {
                    cfg.ReceiveEndpoint(queue, e =>
                    {
                        e.PrefetchCount = int.Parse(Environment.GetEnvironmentVariable("PEER_PREFETCH") ?? "64", CultureInfo.InvariantCulture);
                        e.ConfigureConsumeTopology = false;
                        e.ConfigureConsumer<MtNoopConsumer>(context);
                        e.ConfigureConsumer<MtProbeConsumer>(context);
                    });
                }
            });
        });
        using var host = builder.Build();
        await host.StartAsync(ct);
        try
        {
            var bus = host.Services.GetRequiredService<IBus>();
            switch (command)
            {
                case "worker":
                    Console.WriteLine("ready");
                    try
                    {
                        await Task.Delay(Timeout.Infinite, ct);
                    }
                    catch (OperationCanceledException)
                    {
                        // Stopped by SIGTERM or Ctrl+C.
                    }
                    return 0;
                case "enqueue":
                    {
                        var endpoint = await bus.GetSendEndpoint(new Uri($"queue:{queue}"));
                        await endpoint.Send(new MtNoop(), ct); // declares the queue and opens the channel: not timed
                        Console.WriteLine("warm 1");
                        var n = int.Parse(arguments[0], CultureInfo.InvariantCulture);
                        var limit = TimeSpan.FromSeconds(double.Parse(arguments[1], CultureInfo.InvariantCulture));
                        var start = Stopwatch.GetTimestamp();
                        var count = 0;
                        while (count < n && Stopwatch.GetElapsedTime(start) < limit)
                        {
                            await endpoint.Send(new MtNoop(), ct);
                            count++;
                        }
                        var elapsed = Stopwatch.GetElapsedTime(start).TotalSeconds;
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"enqueued {count} {elapsed}"));
                        var stored = await CountAsync(url, queue);
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"stored {stored}"));
                        return 0;
                    }
                case "fill":
                    {
                        var endpoint = await bus.GetSendEndpoint(new Uri($"queue:{queue}"));
                        var n = int.Parse(arguments[0], CultureInfo.InvariantCulture);
                        for (var done = 0; done < n; done += 1000)
                        {
                            await Task.WhenAll(Enumerable.Range(0, Math.Min(1000, n - done)).Select(_ => endpoint.Send(new MtNoop(), ct)));
                        }
                        var filled = await CountAsync(url, queue);
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"filled {filled}"));
                        return 0;
                    }
                case "latency":
                    {
                        var endpoint = await bus.GetSendEndpoint(new Uri($"queue:{queue}"));
                        var rate = double.Parse(arguments[0], CultureInfo.InvariantCulture);
                        var pending = new List<Task>();
                        foreach (var (count, measured) in new[] { (int.Parse(arguments[1], CultureInfo.InvariantCulture), false), (int.Parse(arguments[2], CultureInfo.InvariantCulture), true) })
                        {
                            var pacer = new Infrastructure.Pacer(rate);
                            for (var i = 0; i < count; i++)
                            {
                                await pacer.WaitForAsync(i, ct);
                                pending.Add(endpoint.Send(new MtProbe(Stopwatch.GetTimestamp(), measured), ct));
                            }
                        }
                        await Task.WhenAll(pending);
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"sent {pending.Count}"));
                        return 0;
                    }
                default:
                    await Console.Error.WriteLineAsync($"unknown command {command}: enqueue, fill, latency or worker");
                    return 2;
            }
        }
        finally
        {
            await host.StopAsync(CancellationToken.None);
        }
    }

    /// <summary>Messages ready in the queue, from the broker (a passive declare).</summary>
    private static async Task<uint> CountAsync(Uri url, string queue)
    {
        await Task.Delay(200);
        var factory = new ConnectionFactory { Uri = url };
        await using var connection = await factory.CreateConnectionAsync();
        await using var channel = await connection.CreateChannelAsync();
        var ok = await channel.QueueDeclarePassiveAsync(queue);
        return ok.MessageCount;
    }

    private static string Required(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } value
        ? value
        : throw new InvalidOperationException($"{name} is not set (the bench sets it).");
}
