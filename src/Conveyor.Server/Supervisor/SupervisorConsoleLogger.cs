using System.Buffers;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging.Console;

namespace Conveyor.Server.Supervisor;

/// <summary>
/// The lean supervisor's logger: writes each entry as the framework's console formatters would with the options of
/// <see cref="SupervisorLogFormat"/> (simple, systemd or JSON), synchronously, without the logging, options and
/// configuration assemblies. Operators and the tests read the same lines from a supervisor whichever form runs it.
/// </summary>
/// <typeparam name="TCategory">The category, named as <see cref="Logger{T}"/> names it.</typeparam>
internal sealed class SupervisorConsoleLogger<TCategory>(SupervisorLogFormat format) : ILogger<TCategory>
{
    private static readonly string Category = typeof(TCategory).FullName!.Replace('+', '.');
    private readonly Lock _gate = new();

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None && logLevel >= format.MinimumLevel;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        ArgumentNullException.ThrowIfNull(formatter);
        if (!IsEnabled(logLevel))
        {
            return;
        }
        var message = formatter(state, exception);
        if (exception is null && message is null)
        {
            return;
        }
        var entry = format.Formatter switch
        {
            ConsoleFormatterNames.Json => Json(logLevel, eventId.Id, state, message, exception),
            ConsoleFormatterNames.Systemd => Systemd(logLevel, eventId.Id, message, exception),
            _ => Simple(logLevel, eventId.Id, message, exception),
        };
        var writer = logLevel >= format.StandardErrorThreshold ? Console.Error : Console.Out;
        lock (_gate)
        {
            writer.Write(entry);
            writer.Flush();
        }
    }

    private string? Timestamp() => format.TimestampFormat is { } timestampFormat
        ? (format.UseUtcTimestamp ? DateTimeOffset.UtcNow : DateTimeOffset.Now).ToString(timestampFormat, CultureInfo.InvariantCulture)
        : null;

    /// <summary><c>12:00:01 info: Conveyor.WorkerSupervisor[2] Worker process 1 started: …</c> on one line, or the level,
    /// category and event id on one line and the message indented on the next.</summary>
    private string Simple(LogLevel logLevel, int eventId, string? message, Exception? exception)
    {
        var text = new StringBuilder();
        text.Append(Timestamp());
        var level = logLevel switch
        {
            LogLevel.Trace => "trce",
            LogLevel.Debug => "dbug",
            LogLevel.Information => "info",
            LogLevel.Warning => "warn",
            LogLevel.Error => "fail",
            _ => "crit",
        };
        if (format.Colors)
        {
            // ANSI codes of the formatter's colors: background, foreground, the level, then both reset.
            var (background, foreground) = logLevel switch
            {
                LogLevel.Trace or LogLevel.Debug => ("\e[40m", "\e[37m"),
                LogLevel.Information => ("\e[40m", "\e[32m"),
                LogLevel.Warning => ("\e[40m", "\e[1m\e[33m"),
                LogLevel.Error => ("\e[49m", "\e[30m"),
                _ => ("\e[49m", "\e[1m\e[37m"),
            };
            text.Append(background).Append(foreground).Append(level).Append("\e[39m\e[22m").Append("\e[49m");
        }
        else
        {
            text.Append(level);
        }
        text.Append(": ").Append(Category).Append('[').Append(eventId.ToString(CultureInfo.InvariantCulture)).Append(']');
        if (!format.SingleLine)
        {
            text.Append(Environment.NewLine);
        }
        AppendMessage(message);
        if (exception is not null)
        {
            AppendMessage(exception.ToString());
        }
        if (format.SingleLine)
        {
            text.Append(Environment.NewLine);
        }
        return text.ToString();

        void AppendMessage(string? part)
        {
            if (string.IsNullOrEmpty(part))
            {
                return;
            }
            // Lined up under the category, after "info: ".
            const string Padding = "      ";
            if (format.SingleLine)
            {
                text.Append(' ').Append(part.Replace(Environment.NewLine, " ", StringComparison.Ordinal));
            }
            else
            {
                text.Append(Padding).Append(part.Replace(Environment.NewLine, Environment.NewLine + Padding, StringComparison.Ordinal)).Append(Environment.NewLine);
            }
        }
    }

    /// <summary><c>&lt;6&gt;Conveyor.WorkerSupervisor[2] Worker process 1 started: …</c>, the syslog priority first for the journal.</summary>
    private string Systemd(LogLevel logLevel, int eventId, string? message, Exception? exception)
    {
        var text = new StringBuilder();
        text.Append(logLevel switch
        {
            LogLevel.Trace or LogLevel.Debug => "<7>",
            LogLevel.Information => "<6>",
            LogLevel.Warning => "<4>",
            LogLevel.Error => "<3>",
            _ => "<2>",
        });
        text.Append(Timestamp()).Append(Category).Append('[').Append(eventId.ToString(CultureInfo.InvariantCulture)).Append(']');
        if (!string.IsNullOrEmpty(message))
        {
            text.Append(' ').Append(message.Replace(Environment.NewLine, " ", StringComparison.Ordinal));
        }
        if (exception is not null)
        {
            text.Append(' ').Append(exception.ToString().Replace(Environment.NewLine, " ", StringComparison.Ordinal));
        }
        return text.Append(Environment.NewLine).ToString();
    }

    /// <summary>The JSON formatter's object: time stamp, event id, level, category, message, exception, the message's
    /// state with its values, and the scopes. Apart so that System.Text.Json is loaded only under LOG_FORMAT=json.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private string Json<TState>(LogLevel logLevel, int eventId, TState state, string? message, Exception? exception)
    {
        var buffer = new ArrayBufferWriter<byte>(1024);
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = format.JsonIndented }))
        {
            writer.WriteStartObject();
            if (Timestamp() is { } timestamp)
            {
                writer.WriteString("Timestamp", timestamp);
            }
            writer.WriteNumber("EventId", eventId);
            writer.WriteString("LogLevel", logLevel.ToString());
            writer.WriteString("Category", Category);
            writer.WriteString("Message", message);
            if (exception is not null)
            {
                var text = exception.ToString();
                writer.WriteString("Exception", format.JsonIndented ? text : text.Replace(Environment.NewLine, " ", StringComparison.Ordinal));
            }
            if (state is not null)
            {
                writer.WriteStartObject("State");
                writer.WriteString("Message", state.ToString());
                if (state is IReadOnlyCollection<KeyValuePair<string, object?>> values)
                {
                    foreach (var (key, value) in values)
                    {
                        WriteValue(writer, key, value);
                    }
                }
                writer.WriteEndObject();
            }
            if (format.IncludeScopes)
            {
                // The supervisor opens no scope.
                writer.WriteStartArray("Scopes");
                writer.WriteEndArray();
            }
            writer.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.WrittenSpan) + Environment.NewLine;
    }

    /// <summary>Numbers and booleans as JSON's, everything else as its invariant text, as the JSON formatter writes them.</summary>
    private static void WriteValue(Utf8JsonWriter writer, string key, object? value)
    {
        switch (value)
        {
            case null:
                writer.WriteNull(key);
                break;
            case bool boolean:
                writer.WriteBoolean(key, boolean);
                break;
            case byte number:
                writer.WriteNumber(key, number);
                break;
            case sbyte number:
                writer.WriteNumber(key, number);
                break;
            case short number:
                writer.WriteNumber(key, number);
                break;
            case ushort number:
                writer.WriteNumber(key, number);
                break;
            case int number:
                writer.WriteNumber(key, number);
                break;
            case uint number:
                writer.WriteNumber(key, number);
                break;
            case long number:
                writer.WriteNumber(key, number);
                break;
            case ulong number:
                writer.WriteNumber(key, number);
                break;
            case float number:
                writer.WriteNumber(key, number);
                break;
            case double number:
                writer.WriteNumber(key, number);
                break;
            case decimal number:
                writer.WriteNumber(key, number);
                break;
            case char character:
                writer.WriteString(key, character.ToString());
                break;
            default:
                writer.WriteString(key, Convert.ToString(value, CultureInfo.InvariantCulture));
                break;
        }
    }
}
