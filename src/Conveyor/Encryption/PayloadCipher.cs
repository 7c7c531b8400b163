using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography;
using System.Text;

namespace Conveyor.Encryption;

/// <summary>The fields of a task that are encrypted at rest; each is bound to its task and its name, so that a value
/// copied onto another task or into another field does not decrypt.</summary>
public enum PayloadField
{
    /// <summary><see cref="TaskMessage.Args"/> (JSON).</summary>
    Args,
    /// <summary><see cref="TaskRecord.Result"/> (JSON).</summary>
    Result,
    /// <summary><see cref="TaskError.Message"/> (text).</summary>
    ErrorMessage,
    /// <summary><see cref="TaskError.Detail"/> (text).</summary>
    ErrorDetail,
    /// <summary>A dashboard user's TOTP secret, <see cref="Backends.StoredUser.MfaSecret"/> (text), bound to the user's
    /// name through <see cref="PayloadCipher.UserId"/> in place of a task id.</summary>
    MfaSecret,
}

/// <summary>
/// Encrypts and decrypts payload values with AES-256-GCM. A value is stored as <c>cv1.&lt;key id&gt;.&lt;base64 of
/// nonce (12 bytes), ciphertext, tag (16 bytes)&gt;</c>; in a JSON field (arguments, result) as that text in a JSON
/// string, so that every backend stores it as the JSON it already stores. The associated data is the field's name and
/// the task's id: a value moved to another task or field fails its tag check. Nonces are random (96 bits), so one key
/// should encrypt fewer than 2^32 values (NIST SP 800-38D): rotate keys long before that. Thread-safe.
/// </summary>
public sealed class PayloadCipher(PayloadKeyRing keys)
{
    /// <summary>What every encrypted value starts with: the format's version, 1.</summary>
    public const string Prefix = "cv1.";

    private const int NonceBytes = 12;
    private const int TagBytes = 16;

    private static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>The keys.</summary>
    public PayloadKeyRing Keys { get; } = keys ?? throw new ArgumentNullException(nameof(keys));

    /// <summary>Whether <paramref name="field"/> holds JSON (arguments, result) rather than text.</summary>
    public static bool IsJson(PayloadField field) => field is PayloadField.Args or PayloadField.Result;

    /// <summary>Whether <paramref name="stored"/> is a value this format encrypted (of a JSON field when
    /// <paramref name="json"/>).</summary>
    public static bool IsEncrypted([NotNullWhen(true)] string? stored, bool json) => stored is not null && (json
        ? stored.Length > Prefix.Length + 2 && stored[0] == '"' && stored[^1] == '"' && string.CompareOrdinal(stored, 1, Prefix, 0, Prefix.Length) == 0
        : stored.StartsWith(Prefix, StringComparison.Ordinal));

    /// <summary>The key id an encrypted value is tagged with; null when <paramref name="stored"/> is not encrypted or
    /// has no key id.</summary>
    public static string? KeyIdOf(string? stored, bool json)
    {
        if (!IsEncrypted(stored, json))
        {
            return null;
        }
        var text = json ? stored.AsSpan(1 + Prefix.Length, stored.Length - 2 - Prefix.Length) : stored.AsSpan(Prefix.Length);
        var dot = text.IndexOf('.');
        return dot <= 0 ? null : text[..dot].ToString();
    }

    /// <summary>Encrypts <paramref name="value"/> with the current key; null stays null.</summary>
    public string? Encrypt(string? value, Guid taskId, PayloadField field)
    {
        if (value is null)
        {
            return null;
        }
        var key = Keys.Current;
        var plainLength = Utf8.GetByteCount(value);
        var sealedLength = NonceBytes + plainLength + TagBytes;
        var rented = ArrayPool<byte>.Shared.Rent(plainLength + sealedLength);
        try
        {
            var plain = rented.AsSpan(0, plainLength);
            Utf8.GetBytes(value, plain);
            var output = rented.AsSpan(plainLength, sealedLength);
            var nonce = output[..NonceBytes];
            RandomNumberGenerator.Fill(nonce);
            Span<byte> aad = stackalloc byte[AssociatedDataBytes];
            WriteAssociatedData(aad, taskId, field);
            using (var aes = new AesGcm(key.Bytes, TagBytes))
            {
                aes.Encrypt(nonce, plain, output.Slice(NonceBytes, plainLength), output[(NonceBytes + plainLength)..], aad);
            }
            plain.Clear();
            var body = Convert.ToBase64String(output);
            return IsJson(field) ? string.Concat("\"", Prefix, key.Id, ".", body, "\"") : string.Concat(Prefix, key.Id, ".", body);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>Decrypts a stored value; a value not in this format (stored before a key was configured, or null) is
    /// returned as it is.</summary>
    /// <exception cref="PayloadDecryptionException">Its key id is not configured, or it does not decrypt (changed, or moved
    /// from another task or field).</exception>
    public string? Decrypt(string? stored, Guid taskId, PayloadField field) =>
        TryDecrypt(stored, taskId, field, out var value, out var problem) ? value : throw new PayloadDecryptionException(problem!);

    /// <summary>Decrypts a stored value without throwing: false, with <paramref name="problem"/> saying why, when it is in
    /// this format but cannot be decrypted; <paramref name="value"/> is then <paramref name="stored"/>.</summary>
    public bool TryDecrypt(string? stored, Guid taskId, PayloadField field, out string? value, out string? problem)
    {
        var json = IsJson(field);
        value = stored;
        problem = null;
        if (!IsEncrypted(stored, json))
        {
            return true;
        }
        var text = json ? stored.AsSpan(1 + Prefix.Length, stored.Length - 2 - Prefix.Length) : stored.AsSpan(Prefix.Length);
        var dot = text.IndexOf('.');
        if (dot <= 0)
        {
            problem = $"The {Name(field)} of task {taskId} starts as an encrypted value ({Prefix}) but has no key id.";
            return false;
        }
        var keyId = text[..dot].ToString();
        if (Keys.Find(keyId) is not { } key)
        {
            problem = $"The {Name(field)} of task {taskId} is encrypted with key '{keyId}', which is not configured " +
                $"(configured: {string.Join(", ", Keys.Keys.Select(k => k.Id))}). Add it to the key file after the current key.";
            return false;
        }
        var body = text[(dot + 1)..];
        var rented = ArrayPool<byte>.Shared.Rent((body.Length / 4 * 3) + 3);
        try
        {
            if (!Convert.TryFromBase64Chars(body, rented, out var length) || length < NonceBytes + TagBytes)
            {
                problem = $"The {Name(field)} of task {taskId} is not a valid encrypted value (key '{keyId}').";
                return false;
            }
            var sealedValue = rented.AsSpan(0, length);
            var plainLength = length - NonceBytes - TagBytes;
            var plain = ArrayPool<byte>.Shared.Rent(Math.Max(plainLength, 1));
            try
            {
                Span<byte> aad = stackalloc byte[AssociatedDataBytes];
                WriteAssociatedData(aad, taskId, field);
                using (var aes = new AesGcm(key.Bytes, TagBytes))
                {
                    aes.Decrypt(sealedValue[..NonceBytes], sealedValue.Slice(NonceBytes, plainLength), sealedValue[(NonceBytes + plainLength)..],
                        plain.AsSpan(0, plainLength), aad);
                }
                value = Utf8.GetString(plain, 0, plainLength);
                plain.AsSpan(0, plainLength).Clear();
                return true;
            }
            catch (AuthenticationTagMismatchException)
            {
                problem = $"The {Name(field)} of task {taskId} does not decrypt with key '{keyId}': it was changed, or belongs to another task or field.";
                return false;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(plain);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>Encrypts an error's message and detail (its type stays in clear: it says what failed, not with what).</summary>
    public TaskError? EncryptError(TaskError? error, Guid taskId) => error is null ? null : error with
    {
        Message = Encrypt(error.Message, taskId, PayloadField.ErrorMessage)!,
        Detail = Encrypt(error.Detail, taskId, PayloadField.ErrorDetail),
    };

    /// <summary>Decrypts an error's message and detail; a part that cannot be decrypted is left as stored.</summary>
    public TaskError? TryDecryptError(TaskError? error, Guid taskId)
    {
        if (error is null || (!IsEncrypted(error.Message, json: false) && !IsEncrypted(error.Detail, json: false)))
        {
            return error;
        }
        TryDecrypt(error.Message, taskId, PayloadField.ErrorMessage, out var message, out _);
        TryDecrypt(error.Detail, taskId, PayloadField.ErrorDetail, out var detail, out _);
        return error with { Message = message!, Detail = detail };
    }

    // The field as one byte, then the task id's 16 bytes.
    private const int AssociatedDataBytes = 1 + 16;

    private static void WriteAssociatedData(Span<byte> destination, Guid taskId, PayloadField field)
    {
        destination[0] = (byte)field;
        if (!taskId.TryWriteBytes(destination[1..], bigEndian: true, out _))
        {
            throw new InvalidOperationException("A Guid is 16 bytes.");
        }
    }

    private static string Name(PayloadField field) => field switch
    {
        PayloadField.Args => "arguments",
        PayloadField.Result => "result",
        PayloadField.ErrorMessage => "error message",
        PayloadField.MfaSecret => "TOTP secret",
        _ => "error detail",
    };

    /// <summary>The id a user's values are bound to, as a task's are to its task id: derived from the name, so that a
    /// secret copied onto another user does not decrypt.</summary>
    public static Guid UserId(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes("conveyor-user:" + name), hash);
        return new Guid(hash[..16], bigEndian: true);
    }
}

/// <summary>
/// A stored payload could not be decrypted: its key id is not configured, or it was changed or moved from another task
/// or field. A task whose arguments cannot be decrypted fails for good with this error (type
/// <c>Conveyor.Encryption.PayloadDecryptionException</c>), without running its handler.
/// </summary>
public sealed class PayloadDecryptionException : PermanentTaskException
{
    /// <summary>Creates the exception.</summary>
    public PayloadDecryptionException() : base("A stored payload could not be decrypted.") { }

    /// <summary>Creates the exception with a message.</summary>
    public PayloadDecryptionException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and cause.</summary>
    public PayloadDecryptionException(string message, Exception innerException) : base(message, innerException) { }
}
