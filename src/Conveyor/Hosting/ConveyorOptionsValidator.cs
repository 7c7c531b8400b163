using Microsoft.Extensions.Options;

namespace Conveyor;

/// <summary>
/// Checks every setting of <see cref="ConveyorOptions"/> when the host starts (<c>ValidateOnStart</c>): a value that
/// cannot work stops the start with a message that names the setting (as a configuration key) and says what it accepts.
/// Every problem is reported at once, not the first alone.
/// </summary>
public sealed class ConveyorOptionsValidator : IValidateOptions<ConveyorOptions>
{
    /// <inheritdoc />
    public ValidateOptionsResult Validate(string? name, ConveyorOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var failures = new List<string>();
        Range(failures, "Conveyor:BulkBatchSize", options.BulkBatchSize, 1, 1_000, "tasks read and changed per step of a bulk retry or purge; default 500");
        Range(failures, "Conveyor:MaxWorkflowSteps", options.MaxWorkflowSteps, 1, 100_000, "most steps one workflow may have; default 10,000");
        if (options.MetricsRefreshInterval < TimeSpan.FromMilliseconds(100))
        {
            failures.Add($"Conveyor:MetricsRefreshInterval is {options.MetricsRefreshInterval:c}: it must be at least 00:00:00.1 (default 00:00:05).");
        }
        ValidateWorker(options.Worker, failures);
        ValidateScheduler(options.Scheduler, failures);
        Positive(failures, "Conveyor:Audit:Retention", options.Audit.Retention, "90.00:00:00");
        Positive(failures, "Conveyor:Workflows:Retention", options.Workflows.Retention, "7.00:00:00");
        ValidateSchedules(options.Schedules, failures);
        failures.AddRange(LimitRules.Check(options.Limits));
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    private static void ValidateSchedules(IDictionary<string, Scheduling.ScheduleSettings> schedules, List<string> failures)
    {
        foreach (var (name, settings) in schedules)
        {
            var errors = new List<FieldError>();
            Scheduling.ScheduleDefinitionValidator.Validate(settings.ToDefinition(name), "", errors);
            foreach (var error in errors)
            {
                var key = error.Field == "name" ? $"Conveyor:Schedules:{name}" : $"Conveyor:Schedules:{name}:{char.ToUpperInvariant(error.Field[0])}{error.Field[1..]}";
                failures.Add($"{key}: {error.Message}.");
            }
        }
    }

    private static void ValidateWorker(WorkerOptions worker, List<string> failures)
    {
        const string W = "Conveyor:Worker:";
        Range(failures, W + "Concurrency", worker.Concurrency, 1, 10_000, "handlers that run at once; default 16");
        if (worker.Prefetch is { } prefetch)
        {
            Range(failures, W + "Prefetch", prefetch, 1, 100_000, "leases held at once; leave it unset for the automatic prefetch");
        }
        Range(failures, W + "FetchConcurrency", worker.FetchConcurrency, 1, 16, "fetches in flight at once; default 2");
        Range(failures, W + "MaxSnoozes", worker.MaxSnoozes, 0, 100_000, "snoozes in a row before a task goes dead; default 100");
        Range(failures, W + "CompletionBatchSize", worker.CompletionBatchSize, 1, 100_000, "completions per backend call; default 512");
        if (worker.LeaseDuration < TimeSpan.FromSeconds(1))
        {
            failures.Add($"{W}LeaseDuration is {worker.LeaseDuration:c}: it must be at least 00:00:01 (default 00:00:30).");
        }
        if (worker.HeartbeatInterval <= TimeSpan.Zero)
        {
            failures.Add($"{W}HeartbeatInterval is {worker.HeartbeatInterval:c}: it must be a positive duration (default 00:00:10).");
        }
        else if (worker.HeartbeatInterval * 2 >= worker.LeaseDuration)
        {
            // One missed beat must not lose the leases: a beat is late by up to a round trip, and one may fail.
            failures.Add($"{W}HeartbeatInterval is {worker.HeartbeatInterval:c}: it must be under half of {W}LeaseDuration " +
                $"({worker.LeaseDuration:c}), so that a lease survives one missed heartbeat (defaults 00:00:10 and 00:00:30).");
        }
        if (worker.FetchWait <= TimeSpan.Zero)
        {
            failures.Add($"{W}FetchWait must be a positive duration: the fallback poll of an idle worker (default 00:00:05).");
        }
        if (worker.ShutdownTimeout < TimeSpan.Zero)
        {
            failures.Add($"{W}ShutdownTimeout is {worker.ShutdownTimeout:c}: it must be zero or more (default 00:00:30).");
        }
        failures.AddRange(WorkerProcessOptionsChecks.Errors(worker));
        try
        {
            worker.ParseQueues();
        }
        catch (FormatException ex)
        {
            failures.Add(ex.Message);
        }
    }

    private static void ValidateScheduler(SchedulerOptions scheduler, List<string> failures)
    {
        const string S = "Conveyor:Scheduler:";
        Positive(failures, S + "PromotionInterval", scheduler.PromotionInterval, "00:00:01");
        Positive(failures, S + "ReaperInterval", scheduler.ReaperInterval, "00:00:05");
        Positive(failures, S + "Retention", scheduler.Retention, "7.00:00:00");
        Positive(failures, S + "RetentionInterval", scheduler.RetentionInterval, "00:01:00");
        Positive(failures, S + "RetentionPassLimit", scheduler.RetentionPassLimit, "00:00:10");
        if (scheduler.RetentionBatchSize < 1)
        {
            failures.Add($"{S}RetentionBatchSize must be at least 1 (tasks deleted per call; default 5000).");
        }
        if (scheduler.LeaderLease < TimeSpan.FromSeconds(1))
        {
            failures.Add($"{S}LeaderLease must be at least 00:00:01 (default 00:00:15).");
        }
    }

    private static void Range(List<string> failures, string key, int value, int min, int max, string what)
    {
        if (value < min || value > max)
        {
            failures.Add($"{key} is {value}: it must be a whole number from {min} to {max} ({what}).");
        }
    }

    private static void Positive(List<string> failures, string key, TimeSpan value, string defaultValue)
    {
        if (value <= TimeSpan.Zero)
        {
            failures.Add($"{key} must be a positive duration (default {defaultValue}).");
        }
    }
}
