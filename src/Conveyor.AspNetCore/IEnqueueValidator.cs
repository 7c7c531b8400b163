namespace Conveyor.AspNetCore;

/// <summary>
/// A check of enqueue requests beyond <see cref="TaskRequestValidator"/>, such as a task's own rules about its
/// arguments. Every registered validator runs on every request that passed the core checks, before anything is stored.
/// </summary>
public interface IEnqueueValidator
{
    /// <summary>Adds the problems of <paramref name="request"/> to <paramref name="errors"/>, naming each field
    /// with <paramref name="prefix"/> in front (empty, or <c>tasks[3].</c> in a batch).</summary>
    void Validate(TaskRequest request, string prefix, List<FieldError> errors);
}

/// <summary>Runs the core checks and every <see cref="IEnqueueValidator"/> over requests.</summary>
public static class EnqueueValidation
{
    /// <summary>Adds the problems of <paramref name="request"/> to <paramref name="errors"/>. Returns true when it has none.</summary>
    /// <param name="request">The request.</param>
    /// <param name="registry">Tasks known to this process; arguments of a known task are checked against its type.</param>
    /// <param name="validators">Extra checks, run only when the core checks pass.</param>
    /// <param name="requireRegistered">Whether a task unknown to <paramref name="registry"/> is an error.</param>
    /// <param name="prefix">Put in front of field names.</param>
    /// <param name="errors">Receives the problems.</param>
    public static bool Validate(TaskRequest request, TaskRegistry registry, IEnumerable<IEnqueueValidator> validators,
        bool requireRegistered, string prefix, List<FieldError> errors)
    {
        ArgumentNullException.ThrowIfNull(validators);
        ArgumentNullException.ThrowIfNull(errors);
        var before = errors.Count;
        TaskRequestValidator.Validate(request, registry, requireRegistered, prefix, errors);
        if (errors.Count == before)
        {
            foreach (var validator in validators)
            {
                validator.Validate(request, prefix, errors);
            }
        }
        return errors.Count == before;
    }
}
