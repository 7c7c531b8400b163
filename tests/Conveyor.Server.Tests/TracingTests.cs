using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Conveyor.AspNetCore;
using Conveyor.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Server.Tests;

/// <summary>One trace from the HTTP request that enqueues a task, through each of its attempts (a retry included), to the
/// task its handler enqueues and that task's attempt: spans collected in-process by an <see cref="ActivityListener"/>.</summary>
public sealed class TracingTests
{
    [Fact]
    public async Task Trace_runs_from_the_request_through_enqueue_attempts_and_the_handlers_child()
    {
        var traceId = ActivityTraceId.CreateRandom();
        var spans = new ConcurrentQueue<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name is ConveyorDiagnostics.Name or "Microsoft.AspNetCore",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity =>
            {
                if (activity.TraceId == traceId)
                {
                    spans.Enqueue(activity);
                }
            },
        };
        ActivitySource.AddActivityListener(listener);

        var builder = WebApplication.CreateBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Services.AddConveyor(o => o.Worker.Queues.Add("traced"))
            .AddTask<FailsOnceThenEnqueuesChild>(FailsOnceThenEnqueuesChild.Name)
            .AddTask<Child>(Child.Name)
            .UseInMemoryBackend();
        builder.Services.AddConveyorApi();
        await using var app = builder.Build();
        app.MapConveyorApi();
        await app.StartAsync();
        using var http = new HttpClient { BaseAddress = new Uri(app.Urls.First()) };

        var callerSpan = ActivitySpanId.CreateRandom();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/v1/tasks")
        {
            Content = JsonContent.Create(new { task = FailsOnceThenEnqueuesChild.Name, queue = "traced", retry = new { backoff = "fixed", delay = "PT0.1S" } }),
        };
        request.Headers.Add("traceparent", $"00-{traceId}-{callerSpan}-01");
        using var response = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var parentId = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetGuid();

        // The child's attempt is the last span of the trace to end.
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!spans.Any(s => s.DisplayName == $"process {Child.Name}") && DateTime.UtcNow < deadline)
        {
            await Task.Delay(25);
        }

        var all = spans.ToList();
        var httpSpan = Assert.Single(all, s => s.Source.Name == "Microsoft.AspNetCore");
        Assert.Equal(callerSpan, httpSpan.ParentSpanId);
        var enqueue = Assert.Single(all, s => s.DisplayName == $"enqueue {FailsOnceThenEnqueuesChild.Name}");
        Assert.Equal(ActivityKind.Producer, enqueue.Kind);
        Assert.Equal(httpSpan.SpanId, enqueue.ParentSpanId);
        Assert.Equal(parentId.ToString(), enqueue.GetTagItem("messaging.message.id"));

        // Both attempts, the failed one and its retry, are children of the enqueue.
        var attempts = all.Where(s => s.DisplayName == $"process {FailsOnceThenEnqueuesChild.Name}").OrderBy(s => s.StartTimeUtc).ToList();
        Assert.Equal(2, attempts.Count);
        Assert.All(attempts, a => Assert.Equal(enqueue.SpanId, a.ParentSpanId));
        Assert.All(attempts, a => Assert.Equal(ActivityKind.Consumer, a.Kind));
        Assert.Equal(ActivityStatusCode.Error, attempts[0].Status);
        Assert.Equal(1, attempts[0].GetTagItem("conveyor.attempt"));
        Assert.Equal(2, attempts[1].GetTagItem("conveyor.attempt"));
        Assert.NotEqual(ActivityStatusCode.Error, attempts[1].Status);

        // The handler's enqueue is a child of its attempt, and the child's attempt a child of that.
        var childEnqueue = Assert.Single(all, s => s.DisplayName == $"enqueue {Child.Name}");
        Assert.Equal(attempts[1].SpanId, childEnqueue.ParentSpanId);
        var childAttempt = Assert.Single(all, s => s.DisplayName == $"process {Child.Name}");
        Assert.Equal(childEnqueue.SpanId, childAttempt.ParentSpanId);

        await app.StopAsync();
    }

    private sealed class FailsOnceThenEnqueuesChild(ITaskClient client) : ITaskHandler<NoArgs>
    {
        public const string Name = "tracing.parent";

        public async Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken)
        {
            if (context.Attempt == 1)
            {
                throw new InvalidOperationException("The first attempt fails, so that the trace has a retry.");
            }
            await client.EnqueueAsync(new TaskRequest(Child.Name) { Options = new EnqueueOptions { Queue = "traced" } }, cancellationToken);
        }
    }

    private sealed class Child : ITaskHandler<NoArgs>
    {
        public const string Name = "tracing.child";

        public Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
