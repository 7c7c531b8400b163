using System.Text.Json;
using Conveyor.Scheduling;

namespace Conveyor.AspNetCore.Requests;

/// <summary>Reads schedule bodies (<c>POST /api/v1/schedules</c>, <c>PUT /api/v1/schedules/{name}</c>) into
/// definitions, naming every problem's field, as <see cref="EnqueueRequestReader"/> does for tasks: unknown fields are
/// errors, and the task and its arguments are checked as an enqueue would check them.</summary>
internal sealed class ScheduleRequestReader(TaskRegistry registry, IEnumerable<IEnqueueValidator> validators)
{
    private const string KnownFields = "name, cron, every, timeZone, task, args, queue, priority, maxAttempts, timeout, expiresAfter, misfire, misfireGrace, maxCatchUp";

    /// <summary>Reads a definition; <paramref name="routeName"/> is the name in the URL of an update (the body's name,
    /// if any, must match it). Adds problems to <paramref name="errors"/>.</summary>
    public ScheduleDefinition Read(JsonElement body, string? routeName, List<FieldError> errors)
    {
        var defaults = new ScheduleDefinition { Name = "", Task = "" };
        var definition = defaults;
        string? name = null;
        string? task = null;
        foreach (var property in body.EnumerateObject())
        {
            var value = property.Value;
            var field = property.Name;
            if (value.ValueKind == JsonValueKind.Null)
            {
                continue;
            }
            switch (field)
            {
                case "name":
                    name = EnqueueRequestReader.ReadString(value, field, errors);
                    break;
                case "cron":
                    definition = definition with { Cron = EnqueueRequestReader.ReadString(value, field, errors) };
                    break;
                case "every":
                    definition = definition with { Every = EnqueueRequestReader.ReadDuration(value, field, errors) };
                    break;
                case "timeZone":
                    definition = definition with { TimeZone = EnqueueRequestReader.ReadString(value, field, errors) ?? defaults.TimeZone };
                    break;
                case "task":
                    task = EnqueueRequestReader.ReadString(value, field, errors);
                    break;
                case "args":
                    definition = definition with { Args = value.GetRawText() };
                    break;
                case "queue":
                    definition = definition with { Queue = EnqueueRequestReader.ReadString(value, field, errors) ?? defaults.Queue };
                    break;
                case "priority":
                    definition = definition with { Priority = EnqueueRequestReader.ReadInt(value, field, errors) ?? 0 };
                    break;
                case "maxAttempts":
                    definition = definition with { MaxAttempts = EnqueueRequestReader.ReadInt(value, field, errors) };
                    break;
                case "timeout":
                    definition = definition with { Timeout = EnqueueRequestReader.ReadDuration(value, field, errors) };
                    break;
                case "expiresAfter":
                    definition = definition with { ExpiresAfter = EnqueueRequestReader.ReadDuration(value, field, errors) };
                    break;
                case "misfire":
                    definition = definition with { Misfire = ReadMisfire(value, field, errors) ?? defaults.Misfire };
                    break;
                case "misfireGrace":
                    definition = definition with { MisfireGrace = EnqueueRequestReader.ReadDuration(value, field, errors) ?? defaults.MisfireGrace };
                    break;
                case "maxCatchUp":
                    definition = definition with { MaxCatchUp = EnqueueRequestReader.ReadInt(value, field, errors) ?? defaults.MaxCatchUp };
                    break;
                default:
                    errors.Add(new(field, $"is not a field of a schedule; known fields: {KnownFields}"));
                    break;
            }
        }
        if (routeName is not null && name is not null && name != routeName)
        {
            errors.Add(new("name", $"is '{name}' but the URL names '{routeName}': a schedule cannot be renamed; delete it and create another"));
        }
        else if (routeName is null && name is null && !errors.Exists(e => e.Field == "name"))
        {
            errors.Add(new("name", "is required"));
        }
        definition = definition with { Name = routeName ?? name ?? "", Task = task ?? "" };
        var rules = new List<FieldError>();
        ScheduleDefinitionValidator.Validate(definition, "", rules);
        if (!string.IsNullOrWhiteSpace(definition.Task))
        {
            // The task and its arguments, as an enqueue of the first tick would check them (registry or live workers).
            var request = new TaskRequest(definition.Task, definition.Args, new EnqueueOptions { Queue = definition.Queue });
            EnqueueValidation.Validate(request, registry, validators, requireRegistered: true, "", rules);
        }
        var reported = errors.Select(e => e.Field).ToHashSet(StringComparer.Ordinal);
        foreach (var rule in rules)
        {
            if (reported.Add(rule.Field) || rule.Message.StartsWith(TaskRequestValidator.UnknownTaskPrefix, StringComparison.Ordinal))
            {
                errors.Add(rule);
            }
        }
        return definition;
    }

    private static MisfirePolicy? ReadMisfire(JsonElement value, string field, List<FieldError> errors)
    {
        var text = EnqueueRequestReader.ReadString(value, field, errors);
        switch (text)
        {
            case null:
                return null;
            case "fireOnce":
                return MisfirePolicy.FireOnce;
            case "skip":
                return MisfirePolicy.Skip;
            case "fireAll":
                return MisfirePolicy.FireAll;
            default:
                errors.Add(new(field, $"'{text}' is not one of fireOnce, skip, fireAll"));
                return null;
        }
    }
}
