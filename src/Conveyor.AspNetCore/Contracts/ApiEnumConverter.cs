using System.Text.Json;
using System.Text.Json.Serialization;

namespace Conveyor.AspNetCore.Contracts;

/// <summary>Writes an enum as its camelCase name (<c>succeeded</c>, <c>cancelled</c>), whatever JSON settings the host app has.</summary>
/// <remarks>For <see cref="TaskState"/> the camelCase names are exactly <see cref="TaskStates.ToApiName"/>; a test holds them equal.</remarks>
/// <typeparam name="TEnum">The enum.</typeparam>
public sealed class ApiEnumConverter<TEnum> : JsonStringEnumConverter<TEnum> where TEnum : struct, Enum
{
    /// <summary>Creates the converter; numbers are not accepted on reading.</summary>
    public ApiEnumConverter() : base(JsonNamingPolicy.CamelCase, allowIntegerValues: false) { }
}
