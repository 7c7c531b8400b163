using System.Collections;
using System.Reflection;
using Conveyor.AspNetCore;
using Conveyor.RabbitMQ;
using Conveyor.Redis;
using Conveyor.Server.Tasks;

namespace Conveyor.Server.Configuration;

/// <summary>
/// The configuration keys <c>conveyor</c> reads, taken from the options classes it binds, so that a misspelt
/// <c>CONVEYOR_*</c> variable (<c>CONVEYOR_WORKER__CONCURENCY</c>) is reported instead of silently ignored.
/// </summary>
internal static class ConfigurationKeys
{
    /// <summary>Variables of these prefixes belong to the test suite, the bench and the supervisor (which marks its children), not to settings.</summary>
    private static readonly string[] IgnoredPrefixes = ["CONVEYOR_TEST_", "CONVEYOR_BENCH_", "CONVEYOR_SUPERVISOR_"];

    private static readonly Lazy<HashSet<string>> Known = new(() =>
    {
        var keys = new HashSet<string>(StringComparer.OrdinalIgnoreCase) { ConveyorConfiguration.LogLevelKey };
        Add(keys, ConveyorConfiguration.Section, typeof(ServerOptions));
        Add(keys, ConveyorConfiguration.Section, typeof(ConveyorOptions));
        Add(keys, ConveyorConfiguration.Section, typeof(ConveyorApiOptions));
        Add(keys, ConveyorConfiguration.Section + ":Http", typeof(HttpTaskOptions));
        Add(keys, ConveyorConfiguration.Section + ":" + EncryptionOptions.SectionName, typeof(EncryptionOptions));
        Add(keys, ConveyorConfiguration.Section + ":Redis", typeof(RedisBackendOptions));
        Add(keys, ConveyorConfiguration.Section + ":RabbitMq", typeof(RabbitMqBackendOptions));
        return keys;
    });

    /// <summary>A warning for each <c>CONVEYOR_*</c> variable of <paramref name="environment"/> that names no setting,
    /// with the closest setting's variable when one is near.</summary>
    public static IReadOnlyList<string> UnknownVariables(IReadOnlyDictionary<string, string?> environment)
    {
        var warnings = new List<string>();
        foreach (var name in environment.Keys.Order(StringComparer.Ordinal))
        {
            if (!name.StartsWith("CONVEYOR_", StringComparison.Ordinal) || IgnoredPrefixes.Any(p => name.StartsWith(p, StringComparison.Ordinal)))
            {
                continue;
            }
            var key = ConveyorEnvironmentVariablesProvider.MapName(name["CONVEYOR_".Length..]);
            if (IsKnown(key))
            {
                continue;
            }
            // An item of a list of settings is compared without its index, and suggested with it.
            var parts = key.Split(':');
            var plain = string.Join(':', parts.Where(part => !int.TryParse(part, out _)));
            var closest = Known.Value.Select(k => (Key: k, Distance: Distance(k, plain))).MinBy(c => c.Distance);
            var hint = closest.Distance <= 3 ? $" (did you mean {VariableName(WithIndexes(closest.Key, parts))}?)" : "";
            warnings.Add($"{name} names no Conveyor setting ({key}) and is ignored{hint}.");
        }
        return warnings;
    }

    /// <summary>Whether <paramref name="key"/> is a setting, an item of a list setting (<c>Conveyor:ApiKeys:0</c>), or a
    /// setting of an item of a list of objects (<c>Conveyor:Limits:0:Rate</c>, known as <c>Conveyor:Limits:Rate</c>).</summary>
    private static bool IsKnown(string key)
    {
        if (Known.Value.Contains(key))
        {
            return true;
        }
        var colon = key.LastIndexOf(':');
        if (colon > 0 && int.TryParse(key.AsSpan(colon + 1), out _) && Known.Value.Contains(key[..colon]))
        {
            return true;
        }
        // An entry of a map setting: Conveyor:Schedules:nightly:Cron is known as Conveyor:Schedules:*:Cron.
        var parts = key.Split(':');
        for (var i = 1; i < parts.Length - 1; i++)
        {
            var named = string.Join(':', parts[..i]) + ":" + AnyName;
            if (Known.Value.Any(k => k.StartsWith(named + ":", StringComparison.OrdinalIgnoreCase))
                && Known.Value.Contains(named + ":" + string.Join(':', parts[(i + 1)..])))
            {
                return true;
            }
        }
        // An item of a list of settings objects: Conveyor:Limits:0:Rate is known as Conveyor:Limits:Rate.
        var withoutIndexes = string.Join(':', parts.Where(part => !int.TryParse(part, out _)));
        return withoutIndexes != key && Known.Value.Contains(withoutIndexes);
    }

    /// <summary><paramref name="known"/> with the index segments of <paramref name="parts"/> put back where they were
    /// (<c>Conveyor:Limits:Rate</c> and <c>Conveyor:LIMITS:1:RAET</c> give <c>Conveyor:Limits:1:Rate</c>).</summary>
    private static string WithIndexes(string known, string[] parts)
    {
        var names = new Queue<string>(known.Split(':'));
        var result = parts.Select(part => int.TryParse(part, out _) || names.Count == 0 ? part : names.Dequeue()).ToList();
        result.AddRange(names);
        return string.Join(':', result);
    }

    private static string VariableName(string key) =>
        "CONVEYOR_" + string.Join("__", key.Split(':').Skip(1).Select(part => string.Concat(part.Select((c, i) =>
            i > 0 && char.IsUpper(c) && !char.IsUpper(part[i - 1]) ? "_" + c : char.ToUpperInvariant(c).ToString()))));

    private static void Add(HashSet<string> keys, string prefix, Type type)
    {
        foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            var key = prefix + ":" + property.Name;
            var propertyType = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
            if (MapValueType(propertyType) is { } valueType)
            {
                // A map of named entries (Conveyor:Schedules:{name}:Cron): any name, then the entry type's keys.
                Add(keys, key + ":" + AnyName, valueType);
            }
            else if (ListOfObjects(propertyType) is { } item)
            {
                // Conveyor:Limits:0:Rate is known as Conveyor:Limits:Rate (IsKnown drops the indexes).
                Add(keys, key, item);
            }
            else if (IsLeaf(propertyType) || (typeof(IEnumerable).IsAssignableFrom(propertyType) && propertyType != typeof(string)))
            {
                keys.Add(key);
            }
            else if (propertyType.IsClass && property.CanRead)
            {
                Add(keys, key, propertyType);
            }
        }
    }

    /// <summary>Stands for the entry's name in the keys of a map setting.</summary>
    private const string AnyName = "*";

    /// <summary>The entry type of a string-keyed map of option objects, or null.</summary>
    private static Type? MapValueType(Type type) =>
        type.IsGenericType && type.GetGenericTypeDefinition() == typeof(IDictionary<,>) && type.GetGenericArguments()[0] == typeof(string)
            && type.GetGenericArguments()[1] is { IsClass: true } value && !IsLeaf(value)
            ? value
            : null;

    /// <summary>The item type of a list of settings objects (<c>IList&lt;LimitRule&gt;</c>), or null.</summary>
    private static Type? ListOfObjects(Type type) =>
        type.IsGenericType && type.GetGenericArguments() is [var item] && typeof(IEnumerable).IsAssignableFrom(type)
            && item.IsClass && item != typeof(string) && !IsLeaf(item) ? item : null;

    private static bool IsLeaf(Type type) =>
        type.IsPrimitive || type.IsEnum || type == typeof(string) || type == typeof(TimeSpan) || type == typeof(decimal) || type == typeof(Uri);

    private static int Distance(string a, string b)
    {
        a = a.ToUpperInvariant();
        b = b.ToUpperInvariant();
        var previous = Enumerable.Range(0, b.Length + 1).ToArray();
        for (var i = 1; i <= a.Length; i++)
        {
            var current = new int[b.Length + 1];
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            }
            previous = current;
        }
        return previous[b.Length];
    }
}
