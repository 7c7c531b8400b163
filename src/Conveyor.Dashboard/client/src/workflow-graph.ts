// A workflow's step graph for display: steps in layers by depth (a step's layer is one more than the deepest of the
// steps it runs after), and counts of steps by state.
import { TASK_STATES, type TaskState, type WorkflowStep } from "./api";

/**
 * The steps in layers: layer 0 holds the steps that wait for nothing, layer n those whose deepest dependency is in
 * layer n - 1. Kahn's order over the edges, without recursion (a 100,000-step chain would overflow the call stack).
 * Each layer keeps the steps' given order. The error step runs after no step and is left out: it is shown apart.
 */
export function layersOf(steps: WorkflowStep[]): WorkflowStep[][] {
  const graph = steps.filter(s => !s.onError);
  const index = new Map(graph.map((s, i) => [s.id, i]));
  const waiting = graph.map(s => s.after.filter(a => index.has(a)).length);
  const dependents: number[][] = graph.map(() => []);
  graph.forEach((s, i) => s.after.forEach(a => { const d = index.get(a); if (d !== undefined) dependents[d].push(i); }));
  const depth = graph.map(() => 0);
  const ready = graph.map((_, i) => i).filter(i => waiting[i] === 0);
  for (let next = 0; next < ready.length; next++) {
    const i = ready[next];
    for (const d of dependents[i]) {
      depth[d] = Math.max(depth[d], depth[i] + 1);
      if (--waiting[d] === 0) ready.push(d);
    }
  }
  // The server refuses cycles; should one arrive all the same, its steps go in a last layer rather than nowhere.
  const deepest = Math.max(0, ...depth);
  const layers: WorkflowStep[][] = [];
  graph.forEach((s, i) => {
    const layer = waiting[i] > 0 ? deepest + 1 : depth[i];
    (layers[layer] ??= []).push(s);
  });
  return layers.filter(l => l !== undefined);
}

/** How many steps are in each state, in the order of TASK_STATES, leaving out states with none; "removed" counts the
 * steps whose task retention deleted (the API gives them no state). */
export function countByState(steps: WorkflowStep[]): [TaskState | "removed", number][] {
  const counts = new Map<string, number>();
  for (const s of steps) counts.set(s.state ?? "removed", (counts.get(s.state ?? "removed") ?? 0) + 1);
  const order: (TaskState | "removed")[] = [...TASK_STATES, "removed"];
  return order.filter(s => counts.has(s)).map(s => [s, counts.get(s)!]);
}

/** Succeeded steps and all steps, the error step left out (it is cancelled unrun when nothing fails). */
export function progressOf(steps: WorkflowStep[]): { done: number; total: number } {
  const graph = steps.filter(s => !s.onError);
  return { done: graph.filter(s => s.state === "succeeded").length, total: graph.length };
}
