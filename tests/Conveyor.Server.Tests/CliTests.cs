using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Conveyor.Sqlite;

namespace Conveyor.Server.Tests;

public sealed class CliTests : IDisposable
{
    private readonly string _folder = TempFolder.Create();

    private Dictionary<string, string> Environment => new()
    {
        ["DATABASE_URL"] = "sqlite:///" + Path.Combine(_folder, "cli.db"),
        ["LOG_LEVEL"] = "warning",
    };

    public void Dispose() => TempFolder.Delete(_folder);

    [Theory]
    [InlineData("--help")]
    [InlineData("server --help")]
    [InlineData("worker --help")]
    [InlineData("enqueue --help")]
    [InlineData("info --help")]
    [InlineData("retry --help")]
    [InlineData("purge --help")]
    [InlineData("migrate --help")]
    [InlineData("tasks --help")]
    [InlineData("task --help")]
    [InlineData("cancel --help")]
    [InlineData("pause --help")]
    [InlineData("resume --help")]
    [InlineData("workers --help")]
    public async Task Help_exits_zero_and_shows_usage(string arguments)
    {
        var args = arguments.Split(' ');

        var (exitCode, output, error) = await ConveyorProcess.RunAsync(_folder, Environment, args);

        Assert.True(exitCode == 0, error);
        var command = args.Length > 1 ? args[0] + " " : "";
        Assert.Contains($"conveyor {command}", output);
        Assert.Contains("Usage:", output);
        Assert.False(File.Exists(Path.Combine(_folder, "cli.db")), "help must not touch the database");
    }

    [Fact]
    public async Task Worker_help_lists_the_worker_process_options()
    {
        var (exitCode, output, error) = await ConveyorProcess.RunAsync(_folder, Environment, "worker", "--help");

        Assert.True(exitCode == 0, error);
        // Each with its value's name, as an option line shows it (another option's description may name it too).
        string[] options =
        [
            "--processes <n>",
            "--concurrency <n>",
            "--queues <list>",
            "--max-tasks-per-child <n>",
            "--max-memory-per-child <size>",
            "--spare-process <bool>",
            "--soft-time-limit <duration>",
            "--time-limit <duration>",
            "--graceful-timeout <duration>",
        ];
        var missing = options.Where(o => !output.Contains(o, StringComparison.Ordinal)).ToArray();
        Assert.True(missing.Length == 0, $"'conveyor worker --help' does not list {string.Join(", ", missing)}:\n{output}");
    }

    [Fact]
    public async Task Enqueued_task_shows_in_info_json()
    {
        var enqueue = await ConveyorProcess.RunAsync(_folder, Environment, "enqueue", "conveyor.noop", "--queue", "cli", "--args", """{"n": 1}""", "--priority", "3");
        Assert.True(enqueue.ExitCode == 0, enqueue.Error);
        Assert.Contains("Enqueued conveyor.noop as", enqueue.Output);

        var info = await ConveyorProcess.RunAsync(_folder, Environment, "info", "--json");

        Assert.True(info.ExitCode == 0, info.Error);
        using var document = JsonDocument.Parse(info.Output);
        var queue = document.RootElement.GetProperty("queues").EnumerateArray().Single();
        Assert.Equal("cli", queue.GetProperty("name").GetString());
        Assert.Equal(1, queue.GetProperty("queued").GetInt64());
        Assert.Equal(1, document.RootElement.GetProperty("totals").GetProperty("queued").GetInt64());
        Assert.Equal(0, document.RootElement.GetProperty("totals").GetProperty("succeeded").GetInt64());
        Assert.Empty(document.RootElement.GetProperty("workers").EnumerateArray());
    }

    [Fact]
    public async Task Info_table_shows_queues_and_totals()
    {
        await ConveyorProcess.RunAsync(_folder, Environment, "enqueue", "conveyor.noop", "--delay", "PT1H");

        var (exitCode, output, error) = await ConveyorProcess.RunAsync(_folder, Environment, "info");

        Assert.True(exitCode == 0, error);
        Assert.Contains("QUEUE", output);
        Assert.Contains("default", output);
        Assert.Contains("1 scheduled", output);
    }

    [Fact]
    public async Task Info_shows_tasks_that_no_live_worker_declares_as_waiting_for_a_handler()
    {
        foreach (var args in new[] { new[] { "reports.nightly" }, ["reports.nightly", "--delay", "PT1H"], ["conveyor.noop", "--queue", "mail"] })
        {
            var enqueue = await ConveyorProcess.RunAsync(_folder, Environment, ["enqueue", .. args]);
            Assert.True(enqueue.ExitCode == 0, enqueue.Error);
        }

        var info = await ConveyorProcess.RunAsync(_folder, Environment, "info", "--json");
        Assert.True(info.ExitCode == 0, info.Error);
        using var document = JsonDocument.Parse(info.Output);
        var waiting = document.RootElement.GetProperty("waitingForHandler");
        Assert.True(waiting.GetProperty("complete").GetBoolean());
        var tasks = waiting.GetProperty("tasks").EnumerateArray().ToList();
        Assert.Equal(["reports.nightly", "conveyor.noop"], tasks.Select(t => t.GetProperty("task").GetString()));
        Assert.Equal(2, tasks[0].GetProperty("count").GetInt64());
        Assert.Equal(1, tasks[0].GetProperty("states").GetProperty("queued").GetInt64());
        Assert.Equal(1, tasks[0].GetProperty("states").GetProperty("scheduled").GetInt64());
        Assert.Equal("mail", tasks[1].GetProperty("queue").GetString());

        var (exitCode, output, error) = await ConveyorProcess.RunAsync(_folder, Environment, "info");
        Assert.True(exitCode == 0, error);
        Assert.Contains("Waiting for a handler", output);
        Assert.Matches(@"reports\.nightly\s+default\s+2\s+1 scheduled, 1 queued", output);
    }

    [Fact]
    public async Task Invalid_enqueue_exits_two_naming_the_field_and_stores_nothing()
    {
        var (exitCode, _, error) = await ConveyorProcess.RunAsync(_folder, Environment, "enqueue", "conveyor.noop", "--priority", "500");

        Assert.Equal(2, exitCode);
        Assert.Contains("priority", error);
        var info = await ConveyorProcess.RunAsync(_folder, Environment, "info", "--json");
        using var document = JsonDocument.Parse(info.Output);
        Assert.Empty(document.RootElement.GetProperty("queues").EnumerateArray());
    }

    [Fact]
    public async Task Migrate_reports_the_schema()
    {
        var (exitCode, output, error) = await ConveyorProcess.RunAsync(_folder, Environment, "migrate");

        Assert.True(exitCode == 0, error);
        Assert.Contains("Migrated: SQLite", output);
        Assert.True(File.Exists(Path.Combine(_folder, "cli.db")));
    }

    [Fact]
    public async Task Unsupported_database_url_exits_two_with_a_clear_message()
    {
        var environment = Environment;
        environment["DATABASE_URL"] = "mysql://conveyor:secret@db:3306/conveyor";

        var (exitCode, _, error) = await ConveyorProcess.RunAsync(_folder, environment, "info");

        Assert.Equal(2, exitCode);
        Assert.Contains("mysql:// needs the MySQL/MariaDB backend, not yet available", error);
        Assert.DoesNotContain("secret", error);
    }

    [Fact]
    public async Task Amqp_url_flag_is_read_and_checked_like_the_variable()
    {
        var (exitCode, _, error) = await ConveyorProcess.RunAsync(_folder, Environment, "info", "--amqp-url", "http://u:secret@broker/");

        Assert.Equal(2, exitCode);
        Assert.Contains("AMQP_URL must start with amqp://", error);
        Assert.DoesNotContain("secret", error);
    }

    [Fact]
    public async Task Rate_limit_that_is_not_N_per_second_minute_or_hour_exits_two_naming_its_key()
    {
        var environment = Environment;
        environment["CONVEYOR_LIMITS__0__TASK"] = "http.request";
        environment["CONVEYOR_LIMITS__0__RATE"] = "10/x";

        var (exitCode, output, error) = await ConveyorProcess.RunAsync(_folder, environment, "worker");

        Assert.Equal(2, exitCode);
        Assert.Contains("Conveyor:Limits:0:Rate is '10/x': use 'N/s', 'N/m' or 'N/h'", error);
        Assert.DoesNotContain("Conveyor worker", output);
    }

    [Fact]
    public async Task A_worker_run_as_root_warns_and_one_run_as_another_user_does_not()
    {
        var environment = Environment;
        environment["LOG_LEVEL"] = "warning";
        using var worker = ConveyorProcess.Start(_folder, environment, "worker");

        // The test runs as whoever runs the suite (root in CI): each case checks its own side.
        if (System.Environment.IsPrivilegedProcess)
        {
            var line = await worker.WaitForLineAsync(l => l.Contains("Conveyor runs as root", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
            Assert.Contains("unprivileged user", line, StringComparison.Ordinal);
        }
        else
        {
            await worker.WaitForLineAsync(l => l.Contains("Conveyor worker", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
            Assert.DoesNotContain("Conveyor runs as root", worker.Output + worker.Error, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task An_allowed_network_that_is_not_a_range_exits_two_naming_its_key()
    {
        var environment = Environment;
        environment["CONVEYOR_HTTP__ALLOWED_NETWORKS"] = "10.0.0.0/8,10.0.0.0/40";

        var (exitCode, output, error) = await ConveyorProcess.RunAsync(_folder, environment, "worker");

        Assert.Equal(2, exitCode);
        Assert.Contains("Conveyor:Http:AllowedNetworks: '10.0.0.0/40' is not an address or range", error);
        Assert.DoesNotContain("Conveyor worker", output);
    }

    [Theory]
    [InlineData("--concurrency", "-5", "Conveyor:Worker:Concurrency is -5: it must be a whole number from 1 to 10000")]
    [InlineData("--queues", "high:ten", "Conveyor:Worker:Queues: 'high:ten' has weight 'ten' (queue 'high')")]
    [InlineData("--queues", "reports:2024", "Conveyor:Worker:Queues: 'reports:2024' has weight '2024' (queue 'reports')")]
    public async Task Worker_setting_that_cannot_work_exits_two_naming_it(string flag, string value, string expected)
    {
        var (exitCode, output, error) = await ConveyorProcess.RunAsync(_folder, Environment, "worker", flag, value);

        Assert.Equal(2, exitCode);
        Assert.Contains(expected, error);
        Assert.DoesNotContain("Conveyor worker", output);
    }

    [Fact]
    public async Task Misspelt_conveyor_variable_is_warned_about_with_the_closest_setting()
    {
        var environment = Environment;
        environment["LOG_LEVEL"] = "information";
        environment["CONVEYOR_WORKER__CONCURENCY"] = "4";
        using var worker = ConveyorProcess.Start(_folder, environment, "worker");

        var line = await worker.WaitForLineAsync(l => l.Contains("CONVEYOR_WORKER__CONCURENCY", StringComparison.Ordinal), TimeSpan.FromSeconds(60));

        Assert.Contains("names no Conveyor setting", line);
        Assert.Contains("did you mean CONVEYOR_WORKER__CONCURRENCY?", line);
        Assert.DoesNotContain("CONVEYOR_WORKER__QUEUES", worker.Output + worker.Error);
    }

    [Fact]
    public async Task A_schedule_in_configuration_that_cannot_work_exits_two_naming_its_key()
    {
        var environment = Environment;
        environment["CONVEYOR_SCHEDULES__NIGHTLY__CRON"] = "0 0 3 * *x";
        environment["CONVEYOR_SCHEDULES__NIGHTLY__TASK"] = "conveyor.noop";
        environment["CONVEYOR_SCHEDULES__NIGHTLY__TIME_ZONE"] = "Mars/Olympus";

        var (exitCode, _, error) = await ConveyorProcess.RunAsync(_folder, environment, "worker");

        Assert.Equal(2, exitCode);
        Assert.Contains("Conveyor:Schedules:NIGHTLY:TimeZone: 'Mars/Olympus' is not a known time zone", error, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("names no Conveyor setting", error);
    }

    [Fact]
    public async Task A_schedule_in_configuration_fires_and_conveyor_schedules_lists_it_with_its_last_and_next_fire()
    {
        var environment = Environment;
        environment["CONVEYOR_SCHEDULES__BEAT__EVERY"] = "00:00:01";
        environment["CONVEYOR_SCHEDULES__BEAT__TASK"] = "conveyor.noop";
        using var worker = ConveyorProcess.Start(_folder, environment, "worker");
        await worker.WaitForLineAsync(l => l.Contains("Conveyor worker", StringComparison.Ordinal), TimeSpan.FromSeconds(60));

        string output = "";
        await FaultTests.WaitUntilAsync(async () =>
        {
            var (exitCode, listed, _) = await ConveyorProcess.RunAsync(_folder, Environment, "schedules");
            output = listed;
            return exitCode == 0 && listed.Contains("BEAT", StringComparison.OrdinalIgnoreCase) && !listed.Contains("never", StringComparison.Ordinal);
        }, TimeSpan.FromSeconds(30), () => "the schedule to be listed with a last fire: " + output);

        Assert.Contains("every PT1S", output, StringComparison.Ordinal);
        Assert.Contains("configuration", output, StringComparison.Ordinal);
        Assert.DoesNotContain("names no Conveyor setting", worker.Output + worker.Error);
        var (_, json, _) = await ConveyorProcess.RunAsync(_folder, Environment, "schedules", "--json");
        Assert.Equal("conveyor.noop", System.Text.Json.JsonDocument.Parse(json).RootElement[0].GetProperty("task").GetString());
        var (paused, said, _) = await ConveyorProcess.RunAsync(_folder, Environment, "schedules", "pause", "BEAT");
        Assert.Equal(0, paused);
        Assert.Contains("Paused schedule 'BEAT'", said, StringComparison.Ordinal);
        var (missing, _, error) = await ConveyorProcess.RunAsync(_folder, Environment, "schedules", "trigger", "nope");
        Assert.Equal(1, missing);
        Assert.Contains("There is no schedule named 'nope'", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Conveyor_limits_lists_the_configured_limits_with_the_slots_held_across_workers()
    {
        var environment = Environment;
        environment["CONVEYOR_LIMITS__0__TASK"] = "conveyor.sleep";
        environment["CONVEYOR_LIMITS__0__CONCURRENCY"] = "2";
        environment["CONVEYOR_LIMITS__1__QUEUE"] = "emails";
        environment["CONVEYOR_LIMITS__1__RATE"] = "10/m";
        for (var i = 0; i < 4; i++)
        {
            var (enqueued, _, enqueueError) = await ConveyorProcess.RunAsync(_folder, environment, "enqueue", "conveyor.sleep", "--args", """{"ms":60000}""");
            Assert.True(enqueued == 0, enqueueError);
        }
        // Like the other read-only commands, limits reads a database that exists (the enqueues created it).
        var (none, empty, _) = await ConveyorProcess.RunAsync(_folder, Environment, "limits");
        Assert.Equal(0, none);
        Assert.Contains("No limits", empty, StringComparison.Ordinal);
        using var worker = ConveyorProcess.Start(_folder, environment, "worker", "--concurrency", "4");
        await worker.WaitForLineAsync(l => l.Contains("Conveyor worker", StringComparison.Ordinal), TimeSpan.FromSeconds(60));

        string listed = "";
        await FaultTests.WaitUntilAsync(async () =>
        {
            var (exitCode, output, _) = await ConveyorProcess.RunAsync(_folder, environment, "limits");
            listed = output;
            // LIMIT (two words), RATE, CONCURRENCY, KEYED BY, RUNNING, RESERVED UNTIL.
            return exitCode == 0 && output.Split('\n').Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                .Any(cells => cells is ["task", "conveyor.sleep", "-", "2", "-", "2", "-"]);
        }, TimeSpan.FromSeconds(30), () => "two slots of conveyor.sleep to be listed as held: " + listed);

        Assert.Contains("queue emails", listed, StringComparison.Ordinal);
        Assert.Contains("10/m", listed, StringComparison.Ordinal);
        var (_, json, _) = await ConveyorProcess.RunAsync(_folder, environment, "limits", "--json");
        var sleep = System.Text.Json.JsonDocument.Parse(json).RootElement.EnumerateArray().Single(l => l.GetProperty("task").GetString() == "conveyor.sleep");
        Assert.Equal(2, sleep.GetProperty("concurrency").GetInt32());
        Assert.Equal(2, sleep.GetProperty("running").GetInt32());
    }

    [Fact]
    public async Task Server_refuses_a_public_address_without_api_keys()
    {
        var (exitCode, output, error) = await ConveyorProcess.RunAsync(_folder, Environment, "server", "--host", "0.0.0.0", "--port", "0");

        Assert.Equal(2, exitCode);
        Assert.Contains("Refusing to listen on http://0.0.0.0:0 without API keys", error);
        Assert.DoesNotContain("Conveyor serving", output);
    }

    [Fact]
    public async Task Server_on_a_taken_port_exits_one_naming_the_address()
    {
        using var taken = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;

        var (exitCode, _, error) = await ConveyorProcess.RunAsync(_folder, Environment, "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture));

        Assert.Equal(1, exitCode);
        Assert.Contains($"conveyor: Failed to bind to address http://127.0.0.1:{port}", error);
    }

    [Fact]
    public async Task Default_command_serves_prints_its_url_and_stops_on_sigterm()
    {
        using var server = ConveyorProcess.Start(_folder, Environment, "--port", "0");
        var line = await server.WaitForLineAsync(l => l.StartsWith("Conveyor serving http://127.0.0.1:", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        var url = line["Conveyor serving ".Length..].Trim();
        using var http = new HttpClient { BaseAddress = new Uri(url) };
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health/live")).StatusCode);

        var enqueue = await ConveyorProcess.RunAsync(_folder, Environment, "enqueue", "conveyor.noop", "--url", url, "--json");
        Assert.True(enqueue.ExitCode == 0, enqueue.Error);
        var id = JsonDocument.Parse(enqueue.Output).RootElement.GetProperty("id").GetGuid();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        string? state;
        do
        {
            state = (await http.GetFromJsonAsync<JsonElement>($"/api/v1/tasks/{id}")).GetProperty("state").GetString();
            if (state == "succeeded")
            {
                break;
            }
            await Task.Delay(25);
        }
        while (DateTime.UtcNow < deadline);
        Assert.Equal("succeeded", state);

        server.Terminate();
        Assert.Equal(0, await server.WaitForExitAsync(TimeSpan.FromSeconds(60)));
    }

    [Fact]
    public async Task Worker_runs_tasks_enqueued_by_another_process_and_stops_on_sigterm()
    {
        using var worker = ConveyorProcess.Start(_folder, Environment, "worker", "--concurrency", "2");
        var line = await worker.WaitForLineAsync(l => l.StartsWith("Conveyor worker ", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        Assert.Contains("concurrency 2", line);

        var enqueue = await ConveyorProcess.RunAsync(_folder, Environment, "enqueue", "conveyor.noop", "--json");
        Assert.True(enqueue.ExitCode == 0, enqueue.Error);
        var id = JsonDocument.Parse(enqueue.Output).RootElement.GetProperty("id").GetGuid();
        using var backend = new SqliteBackend(new SqliteBackendOptions { Path = Path.Combine(_folder, "cli.db") });
        var deadline = DateTime.UtcNow.AddSeconds(30);
        TaskRecord? task;
        do
        {
            task = await backend.GetAsync(id, CancellationToken.None);
            if (task?.State == TaskState.Succeeded)
            {
                break;
            }
            await Task.Delay(25);
        }
        while (DateTime.UtcNow < deadline);
        Assert.Equal(TaskState.Succeeded, task?.State);

        worker.Terminate();
        Assert.Equal(0, await worker.WaitForExitAsync(TimeSpan.FromSeconds(60)));
    }

    /// <summary>Makes <paramref name="count"/> tasks of <paramref name="queue"/> dead in <paramref name="backend"/>, as a
    /// worker would record them.</summary>
    private static async Task<List<Guid>> DeadTasksAsync(Conveyor.Backends.IConveyorBackend backend, string queue, int count)
    {
        var messages = Enumerable.Range(0, count).Select(_ => new TaskMessage { Id = Guid.CreateVersion7(), Task = "conveyor.noop", Queue = queue, CreatedAt = DateTimeOffset.UtcNow }).ToList();
        await backend.Queue.EnqueueAsync(messages, CancellationToken.None);
        var leases = await backend.Queue.FetchAsync(new Conveyor.Backends.FetchRequest
        {
            WorkerId = "cli-test",
            Queues = [new Conveyor.Backends.QueueWeight(queue)],
            MaxCount = count,
            LeaseDuration = TimeSpan.FromMinutes(1),
        }, CancellationToken.None);
        await backend.Queue.CompleteAsync([.. leases.Select(l => new Conveyor.Backends.Completion
        {
            Lease = l.Ref,
            Kind = Conveyor.Backends.CompletionKind.Dead,
            Attempt = l.Attempt,
            Error = new TaskError("System.IO.IOException", "disk full"),
            At = DateTimeOffset.UtcNow,
        })], CancellationToken.None);
        Assert.Equal(count, leases.Count);
        return messages.Select(m => m.Id).ToList();
    }

    [Fact]
    public async Task Retry_and_purge_act_on_the_database_by_filter()
    {
        List<Guid> bulk, other;
        using (var backend = new SqliteBackend(new SqliteBackendOptions { Path = Path.Combine(_folder, "cli.db") }))
        {
            await backend.MigrateAsync(CancellationToken.None);
            bulk = await DeadTasksAsync(backend, "cli-bulk", 3);
            other = await DeadTasksAsync(backend, "cli-other", 1);
        }

        var retry = await ConveyorProcess.RunAsync(_folder, Environment, "retry", "--queue", "cli-bulk", "--limit", "2");
        var purge = await ConveyorProcess.RunAsync(_folder, Environment, "purge", "--all", "--finished-before", "PT0S", "--json");

        Assert.True(retry.ExitCode == 0, retry.Error);
        Assert.Contains("Queued 2 dead tasks again with fresh attempts.", retry.Output);
        Assert.True(purge.ExitCode == 0, purge.Error);
        Assert.Equal(2, JsonDocument.Parse(purge.Output).RootElement.GetProperty("purged").GetInt32());
        using var after = new SqliteBackend(new SqliteBackendOptions { Path = Path.Combine(_folder, "cli.db") });
        var states = await after.GetStatesAsync([.. bulk, .. other], CancellationToken.None);
        // The list is newest first: the two newest were retried, the oldest and the other queue's were purged.
        Assert.Equal(new[] { bulk[1], bulk[2] }.Order(), states.Keys.Order());
        Assert.All(states.Values, s => Assert.Equal(TaskState.Queued, s));
    }

    [Theory]
    [InlineData("retry", new string[0], "all: give --task, --queue, --finished-after or --finished-before")]
    [InlineData("purge", new[] { "--state", "running", "--all" }, "state: 'running' tasks cannot be purged")]
    [InlineData("retry", new[] { "--state", "zombie", "--all" }, "state: 'zombie' is not a state")]
    [InlineData("retry", new[] { "--finished-before", "last week" }, "finished-before: 'last week' is neither an RFC 3339 time")]
    [InlineData("purge", new[] { "--queue", "bad queue" }, "queue: 'bad queue' is not a valid queue name")]
    [InlineData("purge", new[] { "--limit", "0", "--all" }, "limit: 0 is out of range")]
    public async Task Invalid_bulk_filter_exits_two_naming_the_flag_and_touches_nothing(string command, string[] flags, string expected)
    {
        var (exitCode, _, error) = await ConveyorProcess.RunAsync(_folder, Environment, [command, .. flags]);

        Assert.Equal(2, exitCode);
        Assert.Contains(expected, error);
        Assert.False(File.Exists(Path.Combine(_folder, "cli.db")), "a refused command must not touch the database");
    }

    [Fact]
    public async Task Retry_and_purge_through_a_server_with_url()
    {
        await using var server = await TestServer.StartAsync();
        var backend = server.Service<Conveyor.Backends.IConveyorBackend>();
        var dead = await DeadTasksAsync(backend, "cli-url", 2);
        var url = server.BaseAddress.ToString();

        var unreachable = await ConveyorProcess.RunAsync(_folder, Environment, "purge", "--url", "http://127.0.0.1:1", "--queue", "cli-url");
        var retry = await ConveyorProcess.RunAsync(_folder, Environment, "retry", "--url", url, "--queue", "cli-url", "--task", "conveyor.noop", "--json");

        Assert.Equal(1, unreachable.ExitCode);
        Assert.Contains("cannot reach http://127.0.0.1:1", unreachable.Error);
        Assert.True(retry.ExitCode == 0, retry.Error);
        Assert.Equal(2, JsonDocument.Parse(retry.Output).RootElement.GetProperty("retried").GetInt32());
        var states = await backend.Store.GetStatesAsync(dead, CancellationToken.None);
        Assert.All(states.Values, s => Assert.Equal(TaskState.Queued, s));
        Assert.False(File.Exists(Path.Combine(_folder, "cli.db")), "--url must not touch the local database");
    }
}
