using System.Data.Common;
using System.Text.Json;
using Conveyor.Backends;

namespace Conveyor.Sql;

/// <summary>The payload columns of a <c>tasks</c> row as stored text (<c>args</c>, <c>result</c>, <c>error</c>,
/// <c>errors</c>): what a compare-and-set rewrite (<see cref="IPayloadStore"/>) compares, exactly, in its
/// <c>WHERE</c>, so that a row changed since it was read is left alone.</summary>
/// <param name="Args">The <c>args</c> column.</param>
/// <param name="Result">The <c>result</c> column.</param>
/// <param name="Error">The <c>error</c> column (JSON).</param>
/// <param name="Errors">The <c>errors</c> column (one JSON object a line).</param>
public sealed record PayloadRow(string? Args, string? Result, string? Error, string? Errors)
{
    /// <summary>The columns <see cref="Read"/> expects, in this order.</summary>
    public const string Columns = "args, result, error, errors";

    /// <summary>The columns at <paramref name="first"/> and the three after it.</summary>
    public static PayloadRow Read(DbDataReader reader, int first)
    {
        ArgumentNullException.ThrowIfNull(reader);
        string? S(int i) => reader.IsDBNull(first + i) ? null : reader.GetString(first + i);
        return new PayloadRow(S(0), S(1), S(2), S(3));
    }

    /// <summary>The stored text of <paramref name="payload"/>, as the store writes it.</summary>
    public static PayloadRow Format(StoredPayload payload)
    {
        ArgumentNullException.ThrowIfNull(payload);
        return new PayloadRow(payload.Args, payload.Result,
            payload.Error is null ? null : JsonSerializer.Serialize(payload.Error, ConveyorJson.Options),
            TaskHistoryText.FormatErrors(payload.Errors));
    }

    /// <summary>This stored text with the fields where <paramref name="replacement"/> differs from
    /// <paramref name="expected"/> written anew; a field left as it was keeps its text exactly.</summary>
    public PayloadRow With(StoredPayload expected, StoredPayload replacement)
    {
        ArgumentNullException.ThrowIfNull(expected);
        ArgumentNullException.ThrowIfNull(replacement);
        var formatted = Format(replacement);
        return new PayloadRow(
            string.Equals(expected.Args, replacement.Args, StringComparison.Ordinal) ? Args : formatted.Args,
            string.Equals(expected.Result, replacement.Result, StringComparison.Ordinal) ? Result : formatted.Result,
            Equals(expected.Error, replacement.Error) ? Error : formatted.Error,
            expected.Errors.SequenceEqual(replacement.Errors) ? Errors : formatted.Errors);
    }

    /// <summary>The payload this text holds, as <see cref="TaskRows.Read"/> reads it.</summary>
    public StoredPayload Parse() => new(Args, Result,
        Error is null ? null : JsonSerializer.Deserialize<TaskError>(Error, ConveyorJson.Options),
        TaskHistoryText.ParseErrors(Errors));
}
