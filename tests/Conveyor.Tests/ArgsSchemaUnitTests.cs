using System.Text.Json;
using System.Text.Json.Serialization;

namespace Conveyor.Tests;

/// <summary>The schema a worker announces for a task's arguments, and the server's check against it: it refuses what the
/// worker's deserializer refuses, naming the field, and lets through what the worker reads.</summary>
public sealed class ArgsSchemaUnitTests
{
    private sealed record Size(int Width, int Height);

    private sealed record ResizeArgs(string Path, int Quality = 80)
    {
        [JsonRequired]
        public required Size Target { get; init; }
        public List<string> Tags { get; init; } = [];
        public double? Scale { get; init; }
        public bool Sharpen { get; init; }
        public Dictionary<string, int> Limits { get; init; } = [];
    }

    private static readonly JsonElement Schema = ArgsSchema.For(typeof(ResizeArgs))!.Value;

    private static List<FieldError> Check(string? args, JsonElement? schema = null)
    {
        var errors = new List<FieldError>();
        ArgsSchema.Validate(schema ?? Schema, args, "images.resize", "args", errors);
        return errors;
    }

    /// <summary>What the worker itself says of the arguments: null when it reads them.</summary>
    private static string? WorkerReads(string? args) =>
        TaskRegistry.Describe<ResizeHandler>("images.resize", new TaskDefaults()).ValidateArgs(args);

    private sealed class ResizeHandler : ITaskHandler<ResizeArgs>
    {
        public Task HandleAsync(ResizeArgs args, TaskContext context, CancellationToken cancellationToken) => Task.CompletedTask;
    }

    public static TheoryData<string> Accepted => new()
    {
        """{"path": "a.png", "target": {"width": 10, "height": 20}}""",
        """{"Path": "a.png", "TARGET": {"width": "10", "height": 20}, "quality": 90, "tags": ["x", "y"], "scale": null}""",
        """{"path": null, "target": {"width": 1, "height": 2}, "scale": 1.5, "sharpen": true, "limits": {"cpu": 2}, "extra": [1]}""",
    };

    [Theory]
    [MemberData(nameof(Accepted))]
    public void Arguments_the_worker_reads_are_accepted(string args)
    {
        Assert.Null(WorkerReads(args));
        Assert.Empty(Check(args));
    }

    public static TheoryData<string?, string> Refused => new()
    {
        { """{"path": "a.png"}""", "args.target" },
        { """{"path": "a.png", "target": {"width": "wide", "height": 2}}""", "args.target.width" },
        { """{"path": "a.png", "target": {"width": 1.5, "height": 2}}""", "args.target.width" },
        { """{"path": "a.png", "target": {"width": 1.0, "height": 2}}""", "args.target.width" },
        { """{"path": "a.png", "target": {"width": 1, "height": true}}""", "args.target.height" },
        { """{"path": "a.png", "target": {"width": null, "height": 2}}""", "args.target.width" },
        { """{"path": 7, "target": {"width": 1, "height": 2}}""", "args.path" },
        { """{"path": "a", "target": {"width": 1, "height": 2}, "tags": ["x", 3]}""", "args.tags[1]" },
        { """{"path": "a", "target": {"width": 1, "height": 2}, "tags": "x"}""", "args.tags" },
        { """{"path": "a", "target": {"width": 1, "height": 2}, "sharpen": "yes"}""", "args.sharpen" },
        { """{"path": "a", "target": {"width": 1, "height": 2}, "limits": {"cpu": "many"}}""", "args.limits.cpu" },
        { """[1, 2]""", "args" },
        { "null", "args" },
        { null, "args" },
    };

    [Theory]
    [MemberData(nameof(Refused))]
    public void Arguments_the_worker_refuses_are_refused_naming_the_field(string? args, string field)
    {
        Assert.NotNull(WorkerReads(args));
        var errors = Check(args);
        Assert.Contains(errors, e => e.Field == field);
    }

    [Fact]
    public void Problems_say_what_was_expected()
    {
        var error = Assert.Single(Check("""{"path": "a", "target": {"width": "wide", "height": 2}}"""));
        Assert.Equal("args.target.width", error.Field);
        Assert.Contains("an integer", error.Message);

        var missing = Assert.Single(Check("""{"path": "a"}"""));
        Assert.Equal("args.target", missing.Field);
        Assert.StartsWith("is required: an object", missing.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Fields_are_named_under_the_given_prefix()
    {
        var errors = new List<FieldError>();
        Assert.False(ArgsSchema.Validate(Schema, """{"path": 1, "target": {"width": 1, "height": 2}}""", "images.resize", "tasks[3].args", errors));
        Assert.Equal("tasks[3].args.path", Assert.Single(errors).Field);
    }

    [Fact]
    public void Types_that_take_any_json_have_no_schema()
    {
        Assert.Null(ArgsSchema.For(typeof(JsonElement)));
        Assert.Null(ArgsSchema.For(typeof(NoArgs)));
    }

    [Fact]
    public void Problems_are_bounded()
    {
        var tags = string.Join(", ", Enumerable.Range(0, 50));
        var errors = Check($$"""{"path": "a", "target": {"width": 1, "height": 2}, "tags": [{{tags}}]}""");
        Assert.Equal(ArgsSchema.MaxErrors, errors.Count);
    }

    [Fact]
    public void Announced_schemas_leave_out_the_ones_too_large()
    {
        var small = TaskRegistry.Describe<ResizeHandler>("images.resize", new TaskDefaults());
        var big = TaskRegistry.Describe<BigHandler>("big.one", new TaskDefaults());
        var leftOut = new List<string>();

        var announced = ArgsSchema.Announced([small, big], leftOut);

        Assert.True(big.ArgsSchema!.Value.GetRawText().Length > ArgsSchema.MaxSchemaBytes);
        Assert.Equal(["images.resize"], announced.Keys);
        Assert.Equal(["big.one"], leftOut);
    }

    private sealed class BigHandler : ITaskHandler<BigArgs>
    {
        public Task HandleAsync(BigArgs args, TaskContext context, CancellationToken cancellationToken) => Task.CompletedTask;
    }

    /// <summary>Enough properties to pass <see cref="ArgsSchema.MaxSchemaBytes"/> (about 100 bytes of schema each).</summary>
    private sealed record BigArgs(
        int NumberOfThingsCountedInTheNightlyReport000,
        int NumberOfThingsCountedInTheNightlyReport001,
        int NumberOfThingsCountedInTheNightlyReport002,
        int NumberOfThingsCountedInTheNightlyReport003,
        int NumberOfThingsCountedInTheNightlyReport004,
        int NumberOfThingsCountedInTheNightlyReport005,
        int NumberOfThingsCountedInTheNightlyReport006,
        int NumberOfThingsCountedInTheNightlyReport007,
        int NumberOfThingsCountedInTheNightlyReport008,
        int NumberOfThingsCountedInTheNightlyReport009,
        int NumberOfThingsCountedInTheNightlyReport010,
        int NumberOfThingsCountedInTheNightlyReport011,
        int NumberOfThingsCountedInTheNightlyReport012,
        int NumberOfThingsCountedInTheNightlyReport013,
        int NumberOfThingsCountedInTheNightlyReport014,
        int NumberOfThingsCountedInTheNightlyReport015,
        int NumberOfThingsCountedInTheNightlyReport016,
        int NumberOfThingsCountedInTheNightlyReport017,
        int NumberOfThingsCountedInTheNightlyReport018,
        int NumberOfThingsCountedInTheNightlyReport019,
        int NumberOfThingsCountedInTheNightlyReport020,
        int NumberOfThingsCountedInTheNightlyReport021,
        int NumberOfThingsCountedInTheNightlyReport022,
        int NumberOfThingsCountedInTheNightlyReport023,
        int NumberOfThingsCountedInTheNightlyReport024,
        int NumberOfThingsCountedInTheNightlyReport025,
        int NumberOfThingsCountedInTheNightlyReport026,
        int NumberOfThingsCountedInTheNightlyReport027,
        int NumberOfThingsCountedInTheNightlyReport028,
        int NumberOfThingsCountedInTheNightlyReport029,
        int NumberOfThingsCountedInTheNightlyReport030,
        int NumberOfThingsCountedInTheNightlyReport031,
        int NumberOfThingsCountedInTheNightlyReport032,
        int NumberOfThingsCountedInTheNightlyReport033,
        int NumberOfThingsCountedInTheNightlyReport034,
        int NumberOfThingsCountedInTheNightlyReport035,
        int NumberOfThingsCountedInTheNightlyReport036,
        int NumberOfThingsCountedInTheNightlyReport037,
        int NumberOfThingsCountedInTheNightlyReport038,
        int NumberOfThingsCountedInTheNightlyReport039,
        int NumberOfThingsCountedInTheNightlyReport040,
        int NumberOfThingsCountedInTheNightlyReport041,
        int NumberOfThingsCountedInTheNightlyReport042,
        int NumberOfThingsCountedInTheNightlyReport043,
        int NumberOfThingsCountedInTheNightlyReport044,
        int NumberOfThingsCountedInTheNightlyReport045,
        int NumberOfThingsCountedInTheNightlyReport046,
        int NumberOfThingsCountedInTheNightlyReport047,
        int NumberOfThingsCountedInTheNightlyReport048,
        int NumberOfThingsCountedInTheNightlyReport049,
        int NumberOfThingsCountedInTheNightlyReport050,
        int NumberOfThingsCountedInTheNightlyReport051,
        int NumberOfThingsCountedInTheNightlyReport052,
        int NumberOfThingsCountedInTheNightlyReport053,
        int NumberOfThingsCountedInTheNightlyReport054,
        int NumberOfThingsCountedInTheNightlyReport055,
        int NumberOfThingsCountedInTheNightlyReport056,
        int NumberOfThingsCountedInTheNightlyReport057,
        int NumberOfThingsCountedInTheNightlyReport058,
        int NumberOfThingsCountedInTheNightlyReport059,
        int NumberOfThingsCountedInTheNightlyReport060,
        int NumberOfThingsCountedInTheNightlyReport061,
        int NumberOfThingsCountedInTheNightlyReport062,
        int NumberOfThingsCountedInTheNightlyReport063,
        int NumberOfThingsCountedInTheNightlyReport064,
        int NumberOfThingsCountedInTheNightlyReport065,
        int NumberOfThingsCountedInTheNightlyReport066,
        int NumberOfThingsCountedInTheNightlyReport067,
        int NumberOfThingsCountedInTheNightlyReport068,
        int NumberOfThingsCountedInTheNightlyReport069,
        int NumberOfThingsCountedInTheNightlyReport070,
        int NumberOfThingsCountedInTheNightlyReport071,
        int NumberOfThingsCountedInTheNightlyReport072,
        int NumberOfThingsCountedInTheNightlyReport073,
        int NumberOfThingsCountedInTheNightlyReport074,
        int NumberOfThingsCountedInTheNightlyReport075,
        int NumberOfThingsCountedInTheNightlyReport076,
        int NumberOfThingsCountedInTheNightlyReport077,
        int NumberOfThingsCountedInTheNightlyReport078,
        int NumberOfThingsCountedInTheNightlyReport079,
        int NumberOfThingsCountedInTheNightlyReport080,
        int NumberOfThingsCountedInTheNightlyReport081,
        int NumberOfThingsCountedInTheNightlyReport082,
        int NumberOfThingsCountedInTheNightlyReport083,
        int NumberOfThingsCountedInTheNightlyReport084,
        int NumberOfThingsCountedInTheNightlyReport085,
        int NumberOfThingsCountedInTheNightlyReport086,
        int NumberOfThingsCountedInTheNightlyReport087,
        int NumberOfThingsCountedInTheNightlyReport088,
        int NumberOfThingsCountedInTheNightlyReport089,
        int NumberOfThingsCountedInTheNightlyReport090,
        int NumberOfThingsCountedInTheNightlyReport091,
        int NumberOfThingsCountedInTheNightlyReport092,
        int NumberOfThingsCountedInTheNightlyReport093,
        int NumberOfThingsCountedInTheNightlyReport094,
        int NumberOfThingsCountedInTheNightlyReport095,
        int NumberOfThingsCountedInTheNightlyReport096,
        int NumberOfThingsCountedInTheNightlyReport097,
        int NumberOfThingsCountedInTheNightlyReport098,
        int NumberOfThingsCountedInTheNightlyReport099,
        int NumberOfThingsCountedInTheNightlyReport100,
        int NumberOfThingsCountedInTheNightlyReport101,
        int NumberOfThingsCountedInTheNightlyReport102,
        int NumberOfThingsCountedInTheNightlyReport103,
        int NumberOfThingsCountedInTheNightlyReport104,
        int NumberOfThingsCountedInTheNightlyReport105,
        int NumberOfThingsCountedInTheNightlyReport106,
        int NumberOfThingsCountedInTheNightlyReport107,
        int NumberOfThingsCountedInTheNightlyReport108,
        int NumberOfThingsCountedInTheNightlyReport109,
        int NumberOfThingsCountedInTheNightlyReport110,
        int NumberOfThingsCountedInTheNightlyReport111,
        int NumberOfThingsCountedInTheNightlyReport112,
        int NumberOfThingsCountedInTheNightlyReport113,
        int NumberOfThingsCountedInTheNightlyReport114,
        int NumberOfThingsCountedInTheNightlyReport115,
        int NumberOfThingsCountedInTheNightlyReport116,
        int NumberOfThingsCountedInTheNightlyReport117,
        int NumberOfThingsCountedInTheNightlyReport118,
        int NumberOfThingsCountedInTheNightlyReport119);
}
