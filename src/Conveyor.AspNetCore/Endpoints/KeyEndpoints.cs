using System.Text.Json;
using Conveyor.AspNetCore.Audit;
using Conveyor.AspNetCore.Requests;
using Conveyor.AspNetCore.Security;
using Conveyor.Backends;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;

namespace Conveyor.AspNetCore.Endpoints;

/// <summary><c>/api/v1/keys</c> (scope admin): list, create and revoke the API keys stored in the backend. A created key
/// is in the answer once; the backend keeps only its SHA-256.</summary>
internal static class KeyEndpoints
{
    public static void Map(ApiGroups api)
    {
        api.Admin.MapGet("/keys", ListAsync)
            .WithName("ListKeys")
            .WithSummary("The API keys stored in the backend, revoked ones included (never the keys themselves)")
            .Audited("key.list");
        api.Admin.MapPost("/keys", CreateAsync)
            .WithName("CreateKey")
            .WithSummary("Create an API key: {\"name\", \"scopes\": [\"read\"|\"enqueue\"|\"admin\"], \"queues\": [...]}; the key is in the answer, once")
            .ProducesValidationProblem(StatusCodes.Status422UnprocessableEntity)
            .Audited("key.create");
        api.Admin.MapDelete("/keys/{id}", RevokeAsync)
            .WithName("RevokeKey")
            .WithSummary("Revoke an API key: refused from then on (by other servers within Conveyor:ApiKeyRefreshInterval)")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .Audited("key.revoke", "id");
    }

    private static async Task<Results<Ok<List<ApiKeyResource>>, ProblemHttpResult>> ListAsync(IConveyorBackend backend, CancellationToken cancellationToken)
    {
        if (backend.ApiKeys is not { } store)
        {
            return NoStore(backend);
        }
        var keys = await store.ListApiKeysAsync(cancellationToken).ConfigureAwait(false);
        return TypedResults.Ok(keys.Select(ApiKeyResource.From).ToList());
    }

    private static async Task<Results<Created<CreatedApiKeyResource>, ProblemHttpResult>> CreateAsync(HttpContext http, IConveyorBackend backend,
        [FromServices] ApiKeyRegistry registry, [FromServices] IOptions<ConveyorApiOptions> options, TimeProvider time, CancellationToken cancellationToken)
    {
        if (backend.ApiKeys is not { } store)
        {
            return NoStore(backend);
        }
        var (document, problem) = await TaskEndpoints.ReadJsonBodyAsync(http, options.Value, cancellationToken).ConfigureAwait(false);
        if (problem is not null)
        {
            return problem;
        }
        using (document)
        {
            var root = document!.RootElement;
            var errors = new List<FieldError>();
            string? name = null;
            if (root.TryGetProperty("name", out var nameElement) && nameElement.ValueKind != JsonValueKind.Null)
            {
                if (nameElement.ValueKind == JsonValueKind.String)
                {
                    name = nameElement.GetString();
                }
                else
                {
                    errors.Add(new FieldError("name", "must be a string"));
                }
            }
            var scopes = ReadStrings(root, "scopes", errors) ?? [];
            if (!root.TryGetProperty("scopes", out _))
            {
                errors.Add(new FieldError("scopes", $"is required: a list of one or more of {string.Join(", ", ApiScopes.All)}"));
            }
            var queues = ReadStrings(root, "queues", errors);
            if (errors.Count == 0)
            {
                errors.AddRange(NewApiKey.Problems(name, scopes, queues).Select(p => new FieldError(p.Field, p.Message)));
            }
            if (errors.Count > 0)
            {
                return ApiProblems.Fields(StatusCodes.Status422UnprocessableEntity, errors);
            }
            var created = NewApiKey.Create(name, scopes, queues, time.GetUtcNow());
            await store.AddApiKeyAsync(created.Stored, cancellationToken).ConfigureAwait(false);
            registry.Remember(created.Stored);
            // The key's id and what it may do; never the key.
            AuditTrail.SetTarget(http, created.Stored.Id);
            AuditTrail.SetDetails(http, new Dictionary<string, object?> { ["scopes"] = created.Stored.Scopes, ["queues"] = created.Stored.Queues });
            return TypedResults.Created($"/api/v1/keys/{created.Stored.Id}", CreatedApiKeyResource.From(created));
        }
    }

    private static async Task<Results<Ok<ApiKeyResource>, ProblemHttpResult>> RevokeAsync(string id, IConveyorBackend backend,
        [FromServices] ApiKeyRegistry registry, TimeProvider time, CancellationToken cancellationToken)
    {
        if (backend.ApiKeys is not { } store)
        {
            return NoStore(backend);
        }
        await store.RevokeApiKeyAsync(id, time.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        registry.Forget(id);
        var key = (await store.ListApiKeysAsync(cancellationToken).ConfigureAwait(false)).FirstOrDefault(k => k.Id == id);
        return key is null
            ? ApiProblems.Status(StatusCodes.Status404NotFound, "No such key.", $"There is no stored API key '{id}'.")
            : TypedResults.Ok(ApiKeyResource.From(key));
    }

    private static List<string>? ReadStrings(JsonElement root, string field, List<FieldError> errors)
    {
        if (!root.TryGetProperty(field, out var element) || element.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        if (element.ValueKind != JsonValueKind.Array)
        {
            errors.Add(new FieldError(field, "must be a list of strings"));
            return null;
        }
        var values = new List<string>();
        var index = 0;
        foreach (var item in element.EnumerateArray())
        {
            if (item.ValueKind == JsonValueKind.String)
            {
                values.Add(item.GetString()!);
            }
            else
            {
                errors.Add(new FieldError($"{field}[{index}]", "must be a string"));
            }
            index++;
        }
        return values;
    }

    private static ProblemHttpResult NoStore(IConveyorBackend backend) =>
        ApiProblems.Status(StatusCodes.Status404NotFound, "No key store.", $"The {backend.Name} backend keeps no API keys; configure them with CONVEYOR_API_KEYS or Conveyor:ApiKeyFile.");
}

/// <summary>A stored API key as the API shows it: never the key.</summary>
public sealed record ApiKeyResource(string Id, string Name, IReadOnlyList<string> Scopes, IReadOnlyList<string> Queues,
    DateTimeOffset CreatedAt, DateTimeOffset? LastUsedAt, DateTimeOffset? RevokedAt)
{
    /// <summary>The resource of a stored key.</summary>
    public static ApiKeyResource From(StoredApiKey key)
    {
        ArgumentNullException.ThrowIfNull(key);
        return new(key.Id, key.Name, key.Scopes, key.Queues, key.CreatedAt, key.LastUsedAt, key.RevokedAt);
    }
}

/// <summary>A key just created: the only answer that holds the key itself.</summary>
public sealed record CreatedApiKeyResource(string Id, string Key, string Name, IReadOnlyList<string> Scopes, IReadOnlyList<string> Queues, DateTimeOffset CreatedAt)
{
    /// <summary>The resource of a new key.</summary>
    public static CreatedApiKeyResource From(NewApiKey created)
    {
        ArgumentNullException.ThrowIfNull(created);
        return new(created.Stored.Id, created.Key, created.Stored.Name, created.Stored.Scopes, created.Stored.Queues, created.Stored.CreatedAt);
    }
}
