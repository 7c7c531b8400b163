using System.Security.Cryptography;
using System.Text.Json;
using Conveyor.Encryption;

namespace Conveyor.Tests.Encryption;

public sealed class PayloadCipherUnitTests
{
    private static PayloadKey NewKey(string id) => new(id, RandomNumberGenerator.GetBytes(PayloadKey.KeyBytes));

    private static PayloadCipher Cipher(params PayloadKey[] keys) => new(new PayloadKeyRing(keys));

    private const string Args = """{"token":"sk-live-4242","to":"ops@example.com"}""";

    [Fact]
    public void A_value_round_trips_and_is_stored_as_a_json_string_tagged_with_the_key_id()
    {
        var cipher = Cipher(NewKey("k1"));
        var id = Guid.CreateVersion7();

        var stored = cipher.Encrypt(Args, id, PayloadField.Args)!;

        Assert.StartsWith("\"cv1.k1.", stored, StringComparison.Ordinal);
        Assert.DoesNotContain("sk-live", stored, StringComparison.Ordinal);
        Assert.Equal(JsonValueKind.String, JsonDocument.Parse(stored).RootElement.ValueKind);
        Assert.Equal(Args, cipher.Decrypt(stored, id, PayloadField.Args));
    }

    [Fact]
    public void Text_fields_are_stored_without_quotes_and_round_trip_unicode()
    {
        var cipher = Cipher(NewKey("k1"));
        var id = Guid.CreateVersion7();
        const string message = "connexion refusée: 密码 wrong \u0000 end";

        var stored = cipher.Encrypt(message, id, PayloadField.ErrorMessage)!;

        Assert.StartsWith("cv1.k1.", stored, StringComparison.Ordinal);
        Assert.Equal(message, cipher.Decrypt(stored, id, PayloadField.ErrorMessage));
        Assert.Equal("", cipher.Decrypt(cipher.Encrypt("", id, PayloadField.ErrorDetail), id, PayloadField.ErrorDetail));
    }

    [Fact]
    public void Two_encryptions_of_one_value_differ_and_null_stays_null()
    {
        var cipher = Cipher(NewKey("k1"));
        var id = Guid.CreateVersion7();

        Assert.NotEqual(cipher.Encrypt(Args, id, PayloadField.Args), cipher.Encrypt(Args, id, PayloadField.Args));
        Assert.Null(cipher.Encrypt(null, id, PayloadField.Result));
        Assert.Null(cipher.Decrypt(null, id, PayloadField.Result));
    }

    [Fact]
    public void A_changed_value_does_not_decrypt()
    {
        var cipher = Cipher(NewKey("k1"));
        var id = Guid.CreateVersion7();
        var stored = cipher.Encrypt(Args, id, PayloadField.Args)!;
        var body = Convert.FromBase64String(stored[(stored.LastIndexOf('.') + 1)..^1]);
        foreach (var at in (int[])[0, 12, body.Length / 2, body.Length - 1])
        {
            var tampered = (byte[])body.Clone();
            tampered[at] ^= 0x01;
            var changed = stored[..(stored.LastIndexOf('.') + 1)] + Convert.ToBase64String(tampered) + "\"";

            var error = Assert.Throws<PayloadDecryptionException>(() => cipher.Decrypt(changed, id, PayloadField.Args));
            Assert.Contains("does not decrypt with key 'k1'", error.Message, StringComparison.Ordinal);
        }
        var truncated = stored[..(stored.LastIndexOf('.') + 9)] + "\"";
        Assert.Throws<PayloadDecryptionException>(() => cipher.Decrypt(truncated, id, PayloadField.Args));
    }

    [Fact]
    public void A_value_is_bound_to_its_task_and_its_field()
    {
        var cipher = Cipher(NewKey("k1"));
        var id = Guid.CreateVersion7();
        var args = cipher.Encrypt(Args, id, PayloadField.Args)!;
        var message = cipher.Encrypt("secret", id, PayloadField.ErrorMessage)!;

        Assert.Throws<PayloadDecryptionException>(() => cipher.Decrypt(args, Guid.CreateVersion7(), PayloadField.Args));
        Assert.Throws<PayloadDecryptionException>(() => cipher.Decrypt(args, id, PayloadField.Result));
        Assert.Throws<PayloadDecryptionException>(() => cipher.Decrypt(message, id, PayloadField.ErrorDetail));
        Assert.Equal("secret", cipher.Decrypt(message, id, PayloadField.ErrorMessage));
    }

    [Fact]
    public void An_unknown_key_id_is_named_and_the_value_is_left_as_stored()
    {
        var id = Guid.CreateVersion7();
        var stored = Cipher(NewKey("old")).Encrypt(Args, id, PayloadField.Args)!;
        var cipher = Cipher(NewKey("new"));

        var error = Assert.Throws<PayloadDecryptionException>(() => cipher.Decrypt(stored, id, PayloadField.Args));
        Assert.Contains("key 'old', which is not configured (configured: new)", error.Message, StringComparison.Ordinal);
        Assert.False(cipher.TryDecrypt(stored, id, PayloadField.Args, out var value, out var problem));
        Assert.Equal(stored, value);
        Assert.NotNull(problem);
    }

    [Fact]
    public void A_key_with_the_same_id_but_other_bytes_does_not_decrypt()
    {
        var id = Guid.CreateVersion7();
        var stored = Cipher(NewKey("k1")).Encrypt(Args, id, PayloadField.Args)!;

        Assert.Throws<PayloadDecryptionException>(() => Cipher(NewKey("k1")).Decrypt(stored, id, PayloadField.Args));
    }

    [Fact]
    public void With_two_keys_the_first_encrypts_and_both_decrypt()
    {
        var old = NewKey("2025");
        var current = NewKey("2026");
        var id = Guid.CreateVersion7();
        var before = Cipher(old).Encrypt(Args, id, PayloadField.Result)!;
        var rotated = Cipher(current, old);

        var after = rotated.Encrypt(Args, id, PayloadField.Result)!;

        Assert.StartsWith("\"cv1.2026.", after, StringComparison.Ordinal);
        Assert.Equal(Args, rotated.Decrypt(before, id, PayloadField.Result));
        Assert.Equal(Args, rotated.Decrypt(after, id, PayloadField.Result));
        Assert.Throws<PayloadDecryptionException>(() => Cipher(old).Decrypt(after, id, PayloadField.Result));
    }

    [Fact]
    public void Values_stored_before_a_key_was_configured_read_as_they_are()
    {
        var cipher = Cipher(NewKey("k1"));
        var id = Guid.CreateVersion7();

        Assert.Equal(Args, cipher.Decrypt(Args, id, PayloadField.Args));
        Assert.Equal("\"cv1\"", cipher.Decrypt("\"cv1\"", id, PayloadField.Result));
        Assert.Equal("plain message", cipher.Decrypt("plain message", id, PayloadField.ErrorMessage));
    }

    [Fact]
    public void An_error_keeps_its_type_in_clear_and_hides_its_message_and_detail()
    {
        var cipher = Cipher(NewKey("k1"));
        var id = Guid.CreateVersion7();
        var error = new TaskError("System.Net.Http.HttpRequestException", "401 for token sk-live-4242", "at Send() sk-live-4242");

        var stored = cipher.EncryptError(error, id)!;

        Assert.Equal(error.Type, stored.Type);
        Assert.DoesNotContain("sk-live", stored.Message + stored.Detail, StringComparison.Ordinal);
        Assert.Equal(error, cipher.TryDecryptError(stored, id));
    }

    [Theory]
    [InlineData("", "is 0 bytes")]
    [InlineData("k1:", "is 0 bytes")]
    [InlineData("k1:!!!notbase64!!!", "not base64")]
    [InlineData("k1:AAAAAAAAAAAAAAAAAAAAAA==", "is 16 bytes, not 32")]
    [InlineData("bad id:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "key id")]
    [InlineData("k.1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "key id")]
    public void A_bad_key_is_refused_naming_the_setting(string entry, string expected)
    {
        var error = Assert.Throws<FormatException>(() => PayloadKey.Parse(entry, idRequired: false, "THE_SETTING"));

        Assert.StartsWith("THE_SETTING", error.Message, StringComparison.Ordinal);
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_key_without_an_id_gets_the_default_id_and_errors_never_show_a_key()
    {
        var bytes = RandomNumberGenerator.GetBytes(PayloadKey.KeyBytes);
        var base64 = Convert.ToBase64String(bytes);

        Assert.Equal(PayloadKey.DefaultId, PayloadKey.Parse(base64, idRequired: false, "S").Id);
        var shortKey = Convert.ToBase64String(bytes[..31]);
        var error = Assert.Throws<FormatException>(() => PayloadKey.Parse("k:" + shortKey, idRequired: false, "S"));
        Assert.DoesNotContain(shortKey, error.Message, StringComparison.Ordinal);
        Assert.Throws<FormatException>(() => PayloadKey.Parse(base64, idRequired: true, "S"));
    }

    [Fact]
    public void A_key_file_lists_the_current_key_first_and_refuses_duplicate_ids()
    {
        var a = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
        var b = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));

        var ring = PayloadKeyRing.ParseFile(["# keys", "", $"new:{a}", $" old : {b} "], "FILE");
        Assert.Equal(["new", "old"], ring.Keys.Select(k => k.Id));
        Assert.Equal("new", ring.Current.Id);

        var duplicate = Assert.Throws<FormatException>(() => PayloadKeyRing.ParseFile([$"k:{a}", $"k:{b}"], "FILE"));
        Assert.Contains("FILE line 2: the key id 'k' is already used on line 1", duplicate.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(b, duplicate.Message, StringComparison.Ordinal);
        Assert.Contains("holds no key", Assert.Throws<FormatException>(() => PayloadKeyRing.ParseFile(["# none"], "FILE")).Message, StringComparison.Ordinal);
    }
}
