namespace Conveyor.Encryption;

/// <summary>
/// Fails, for good, an attempt whose arguments could not be decrypted when it was fetched (<see cref="EncryptingBackend"/>
/// marks it with <see cref="EncryptingBackend.DecryptionErrorHeader"/>): the handler does not run on ciphertext, and the
/// task ends dead with a <see cref="PayloadDecryptionException"/> that says which key is missing. Registered with
/// <see cref="ConveyorBuilder.UseEncryption"/> only.
/// </summary>
internal sealed class PayloadDecryptionMiddleware : ITaskMiddleware
{
    public ValueTask InvokeAsync(TaskExecutionContext context, TaskExecutionDelegate next)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(next);
        if (context.Message.Headers is { } headers && headers.TryGetValue(EncryptingBackend.DecryptionErrorHeader, out var problem))
        {
            throw new PayloadDecryptionException(problem);
        }
        return next(context);
    }
}
