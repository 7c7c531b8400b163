// Schedules: every periodic schedule with its timing, next fire times, pause/resume and trigger now.
import { api } from "../api";
import { ago, time } from "../format";
import { useLiveData } from "../live";
import { href } from "../router";
import { act, confirm, Empty, ErrorNote } from "../ui";

export function SchedulesView() {
  const schedules = useLiveData(s => api.schedules(s), [], e => e.type === "enqueued", 2000);
  const toggle = async (name: string, paused: boolean) => {
    await act(() => paused ? api.resumeSchedule(name) : api.pauseSchedule(name), s => `Schedule ${s.name} ${s.paused ? "paused" : "resumed"}`) && schedules.reload();
  };
  const trigger = async (name: string) => {
    if (await confirm(`Run ${name} now?`, <p>Enqueues the schedule's task once now, outside its ticks. The task cannot be un-enqueued (cancel it from its page).</p>, "Run now", false))
      await act(() => api.triggerSchedule(name), r => `Enqueued task ${r.taskId}`) && schedules.reload();
  };
  return <section aria-labelledby="schedules-title">
    <h1 id="schedules-title">Schedules</h1>
    <ErrorNote error={schedules.error} />
    {schedules.data && (schedules.data.length === 0 ? <Empty>No schedules. Add them in code, configuration, with <code>conveyor schedules</code> or <code>POST /api/v1/schedules</code>.</Empty> :
      <div class="scroll"><table class="schedules">
        <thead><tr><th scope="col">Name</th><th scope="col">Timing</th><th scope="col">Task</th><th scope="col">Last fired</th><th scope="col">Next</th><th scope="col">State</th><th scope="col"><span class="sr">Actions</span></th></tr></thead>
        <tbody>{schedules.data.map(s => <tr data-schedule={s.name}>
          <th scope="row">{s.name}<div class="muted">{s.source}</div></th>
          <td><code>{s.cron ?? `every ${s.every}`}</code><div class="muted">{s.timeZone}</div></td>
          <td>{s.task}<div class="muted">{s.queue}</div></td>
          <td>{s.lastTaskId ? <a href={href(`tasks/${s.lastTaskId}`)}>{ago(s.lastFireAt)}</a> : ago(s.lastFireAt)}{s.missed > 0 && <div class="muted">{s.missed} missed</div>}</td>
          <td>{s.paused ? "—" : time(s.nextFireTimes[0])}</td>
          <td>{s.paused ? <span class="badge paused">paused</span> : <span class="badge ok">active</span>}</td>
          <td class="row-actions">
            <button type="button" onClick={() => toggle(s.name, s.paused)} aria-label={`${s.paused ? "Resume" : "Pause"} schedule ${s.name}`}>{s.paused ? "Resume" : "Pause"}</button>
            <button type="button" onClick={() => trigger(s.name)} aria-label={`Trigger schedule ${s.name}`}>Trigger</button>
          </td>
        </tr>)}</tbody>
      </table></div>)}
  </section>;
}
