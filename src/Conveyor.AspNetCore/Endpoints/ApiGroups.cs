using Microsoft.AspNetCore.Routing;

namespace Conveyor.AspNetCore.Endpoints;

/// <summary>The API's endpoint groups by the scope they need (<see cref="Security.ApiScopes"/>): each carries the
/// authorization policy of its scope.</summary>
/// <param name="Read">GET endpoints: scope <c>read</c>.</param>
/// <param name="Enqueue">Enqueue and workflow creation: scope <c>enqueue</c>.</param>
/// <param name="Admin">Everything that changes or removes what is there: scope <c>admin</c>.</param>
internal sealed record ApiGroups(RouteGroupBuilder Read, RouteGroupBuilder Enqueue, RouteGroupBuilder Admin);
