using System.Security.Cryptography;
using System.Text;
using Conveyor.AspNetCore.Requests;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;
using Microsoft.Net.Http.Headers;

namespace Conveyor.AspNetCore.Security;

/// <summary>The configured API keys, kept as SHA-256 hashes so that checking one takes the same time whatever it is.</summary>
internal sealed class ApiKeyValidator
{
    private readonly byte[][] _keyHashes;

    public ApiKeyValidator(IOptions<ConveyorApiOptions> options)
    {
        _keyHashes = options.Value.ApiKeys
            .Select(k => k.Trim())
            .Where(k => k.Length > 0)
            .Select(k => SHA256.HashData(Encoding.UTF8.GetBytes(k)))
            .ToArray();
    }

    /// <summary>Whether any key is configured; without one the API is open.</summary>
    public bool Required => _keyHashes.Length > 0;

    /// <summary>Whether <paramref name="presented"/> is one of the keys. Hashing first makes every comparison the
    /// same length, and every key is compared, so neither the length nor the position of a match shows in the time.</summary>
    public bool IsValid(ReadOnlySpan<char> presented)
    {
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(Encoding.UTF8.GetBytes(presented.ToString()), hash);
        var match = false;
        foreach (var key in _keyHashes)
        {
            match |= CryptographicOperations.FixedTimeEquals(hash, key);
        }
        return match;
    }
}

/// <summary>Answers 401 to <c>/api</c> requests without a valid <c>Authorization: Bearer &lt;key&gt;</c> when keys are configured.</summary>
internal sealed class ApiKeyEndpointFilter(ApiKeyValidator validator) : IEndpointFilter
{
    private const string Scheme = "Bearer ";

    public ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        if (!validator.Required)
        {
            return next(context);
        }
        var header = context.HttpContext.Request.Headers.Authorization.ToString();
        if (!header.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase))
        {
            return Unauthorized(context.HttpContext, "This API needs an API key: send the header 'Authorization: Bearer <key>'.");
        }
        if (!validator.IsValid(header.AsSpan(Scheme.Length).Trim()))
        {
            return Unauthorized(context.HttpContext, "The API key is not valid.");
        }
        return next(context);
    }

    private static ValueTask<object?> Unauthorized(HttpContext http, string detail)
    {
        http.Response.Headers[HeaderNames.WWWAuthenticate] = "Bearer realm=\"conveyor\"";
        return ValueTask.FromResult<object?>(ApiProblems.Status(StatusCodes.Status401Unauthorized, "Unauthorized.", detail));
    }
}
