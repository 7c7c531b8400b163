using System.Buffers;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Conveyor.AspNetCore.Requests;

/// <summary>
/// Reads a request body up to a size limit. The API reads bodies itself, rather than leaving the limit to Kestrel,
/// so that an oversized body is answered with a problem-details 413 like every other error, and so that the limit
/// is the API's option whatever server hosts it.
/// </summary>
internal static class RequestBodyReader
{
    /// <summary>Returns the body, or null when it is larger than <paramref name="limit"/> bytes.</summary>
    public static async Task<ReadOnlyMemory<byte>?> ReadAsync(HttpRequest request, long limit, CancellationToken cancellationToken)
    {
        if (request.ContentLength is { } declared && declared > limit)
        {
            return null;
        }
        // The server's own limit (Kestrel: 30 MB) would end the read with an exception; this read stops at the API's limit instead.
        if (request.HttpContext.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } sizeFeature)
        {
            sizeFeature.MaxRequestBodySize = null;
        }
        var buffer = new ArrayBufferWriter<byte>((int)Math.Min(request.ContentLength ?? 4096, limit) + 1);
        try
        {
            while (true)
            {
                var memory = buffer.GetMemory(8192);
                var read = await request.Body.ReadAsync(memory, cancellationToken).ConfigureAwait(false);
                if (read == 0)
                {
                    return buffer.WrittenMemory;
                }
                buffer.Advance(read);
                if (buffer.WrittenCount > limit)
                {
                    return null;
                }
            }
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return null;
        }
    }

    /// <summary>The answer to a body the server could not read to its end (the client stopped sending).</summary>
    public static Microsoft.AspNetCore.Http.HttpResults.ProblemHttpResult Incomplete(Exception exception) =>
        ApiProblems.Status(StatusCodes.Status400BadRequest, "The request body could not be read.",
            $"The body could not be read to its end: {exception.Message}");

    /// <summary>The 413 answer.</summary>
    public static Microsoft.AspNetCore.Http.HttpResults.ProblemHttpResult TooLarge(long limit) =>
        ApiProblems.Status(StatusCodes.Status413PayloadTooLarge, "The request body is too large.",
            $"The body is larger than the limit of {limit} bytes (Conveyor:MaxRequestBodySize). Split a large batch into smaller ones.",
            new Dictionary<string, object?> { ["limit"] = limit });
}
