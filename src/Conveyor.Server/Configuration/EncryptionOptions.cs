using Conveyor.Encryption;

namespace Conveyor.Server.Configuration;

/// <summary>Payload encryption at rest, bound from <c>Conveyor:Encryption</c> (docs/security.md#encryption-at-rest). No
/// flag takes a key: <c>ps</c> would show it.</summary>
internal sealed class EncryptionOptions
{
    /// <summary>The configuration section.</summary>
    public const string SectionName = "Encryption";

    /// <summary>One key, <c>base64</c> of 32 bytes (id <c>1</c>) or <c>id:base64</c> (environment
    /// <c>CONVEYOR_ENCRYPTION_KEY</c>). Default none.</summary>
    public string? Key { get; set; }

    /// <summary>A file of keys, one a line as <c>id:base64</c>, the current key first; the others only decrypt, so keys
    /// rotate without downtime (environment <c>CONVEYOR_ENCRYPTION_KEY_FILE</c>, flag <c>--encryption-key-file</c>).
    /// Default none.</summary>
    public string? KeyFile { get; set; }

    private const string KeySetting = "CONVEYOR_ENCRYPTION_KEY (Conveyor:Encryption:Key)";
    private const string KeyFileSetting = "CONVEYOR_ENCRYPTION_KEY_FILE (Conveyor:Encryption:KeyFile, --encryption-key-file)";

    /// <summary>The keys configured, or null when none is (no encryption). Throws
    /// <see cref="ConveyorConfigurationException"/> naming the setting, never a key, when a key or the file is bad.</summary>
    public PayloadKeyRing? ReadKeys()
    {
        var hasKey = !string.IsNullOrWhiteSpace(Key);
        var hasFile = !string.IsNullOrWhiteSpace(KeyFile);
        if (hasKey && hasFile)
        {
            throw new ConveyorConfigurationException($"{KeySetting} and {KeyFileSetting} are both set: set one (to rotate keys, list them all in the file, the current one first).");
        }
        try
        {
            if (hasKey)
            {
                return new PayloadKeyRing([PayloadKey.Parse(Key!, idRequired: false, KeySetting)]);
            }
            if (hasFile)
            {
                string[] lines;
                try
                {
                    lines = File.ReadAllLines(KeyFile!);
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    throw new ConveyorConfigurationException($"{KeyFileSetting} '{KeyFile}' cannot be read: {ex.Message}", ex);
                }
                return PayloadKeyRing.ParseFile(lines, $"{KeyFileSetting} '{KeyFile}'");
            }
        }
        catch (FormatException ex)
        {
            throw new ConveyorConfigurationException(ex.Message, ex);
        }
        return null;
    }
}
