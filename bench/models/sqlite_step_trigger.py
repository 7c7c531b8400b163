#!/usr/bin/env python3
# A model of SQLite's completion of a chord's members (docs/benchmarks.md, "Workflows"): the migrations applied to a
# fresh database, 10,000 members running, completed in batches of 64 by the completion's statement; the cost per member
# with the step trigger, with each of its statements alone, without it, and with the batch's successes written once
# (what SqliteBackend.StepSuccesses does), against a plain task's completion. Python's sqlite3, not the product's driver:
# the absolute figures include Python's per-statement cost; compare them within one run.
#   python3 bench/models/sqlite_step_trigger.py
import sqlite3, glob, os, time, uuid, sys, tempfile
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
TMP = tempfile.mkdtemp()
def db(name):
    path = os.path.join(TMP, name)
    if os.path.exists(path): os.remove(path)
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL"); c.execute("PRAGMA synchronous=NORMAL")
    for f in sorted(glob.glob(os.path.join(ROOT, 'src/Conveyor.Sqlite/Migrations/*.sql'))):
        c.executescript(open(f).read())
    return c
N = 10000
BATCH = 64
def fill(c, chord):
    wf = uuid.uuid4().bytes
    ids = [uuid.uuid4().bytes for _ in range(N)]
    cb = uuid.uuid4().bytes
    c.execute("BEGIN")
    if chord:
        c.execute("INSERT INTO workflows (id, name, state, created_at, active_steps) VALUES (?, 'c', 0, 0, ?)", (wf, N))
        c.execute("INSERT INTO workflow_graphs (id, steps) VALUES (?, ?)", (wf, 'x' * (100 * N)))
    for i in ids:
        c.execute("INSERT INTO tasks (id, task, queue, state, args, max_attempts, retry_base_ms, retry_max_ms, retry_jitter, created_at, history, lease_token, workflow_id, headers) VALUES (?, 'noop', 'default', 2, '{}', 3, 1000, 60000, 0.2, 0, '1:0|2:0', 1, ?, ?)",
                  (i, wf if chord else None, '{"conveyor-workflow":"x","conveyor-step":"1"}' if chord else None))
        if chord:
            c.execute("INSERT INTO workflow_edges (from_task, to_task) VALUES (?, ?)", (i, cb))
    if chord:
        c.execute("INSERT INTO tasks (id, task, queue, state, args, max_attempts, retry_base_ms, retry_max_ms, retry_jitter, created_at, history, workflow_id, pending_steps) VALUES (?, 'noop', 'default', 8, '{}', 3, 1000, 60000, 0.2, 0, '8:0', ?, ?)", (cb, wf, N))
    c.execute("COMMIT")
    return ids
SET = "UPDATE tasks SET state = 3, result = NULL, finished_at = 5, lease_token = NULL, lease_expires = NULL, history = history || '|3:5'"
def run(c, ids, sql):
    t = time.perf_counter()
    for k in range(0, len(ids), BATCH):
        c.execute("BEGIN")
        for i in ids[k:k+BATCH]:
            c.execute(sql, (i,))
        c.execute("DELETE FROM workflow_ready")
        c.execute("COMMIT")
    return time.perf_counter() - t

c = db('plain.db'); ids = fill(c, False)
tp = run(c, ids, SET + " WHERE id = ? AND lease_token = 1 AND state = 2 AND workflow_id IS NULL")
print(f"plain task: {tp*1e6/N:.1f} us")
import re

src = open(os.path.join(ROOT, 'src/Conveyor.Sqlite/Migrations/009_workflow_failure_policies.sql')).read()
trig = src[src.index('CREATE TRIGGER'):]
head = trig[:trig.index('BEGIN')+5]
body = trig[trig.index('BEGIN')+5:trig.rindex('END;')]
stmts = [s.strip() for s in re.sub(r'--[^\n]*', '', body).split(';') if s.strip()]
print(len(stmts), 'statements')
for k in [None] + list(range(len(stmts))):
    c = db('chord.db'); ids = fill(c, True)
    c.execute("DROP TRIGGER workflow_step_ended")
    chosen = stmts if k is None else [stmts[k]]
    c.execute(head + '\n' + ';\n'.join(chosen) + ';\nEND;')
    tc = run(c, ids, SET + ", workflow_id = workflow_id WHERE id = ? AND lease_token = 1 AND state = 2")
    print(k, f"{tc*1e6/N:.1f} us/member", (stmts[k][:70].replace('\n',' ') if k is not None else 'ALL'))
c = db('chord.db'); ids = fill(c, True); c.execute("DROP TRIGGER workflow_step_ended")
tc = run(c, ids, SET + ", workflow_id = workflow_id WHERE id = ? AND lease_token = 1 AND state = 2")
print('none', f"{tc*1e6/N:.1f} us/member")

import time
def run_fast(c, ids):
    t = time.perf_counter()
    for k in range(0, len(ids), BATCH):
        c.execute("BEGIN")
        ended = {}; deps = {}
        for i in ids[k:k+BATCH]:
            r = c.execute(SET + " WHERE id = ? AND lease_token = 1 AND state = 2 AND workflow_id IS NULL", (i,)).rowcount
            if r == 0:
                row = c.execute(SET + " WHERE id = ? AND lease_token = 1 AND state = 2 AND workflow_id IS NOT NULL RETURNING workflow_id", (i,)).fetchone()
                if row:
                    ended[row[0]] = ended.get(row[0], 0) + 1
                    for (to,) in c.execute("SELECT to_task FROM workflow_edges WHERE from_task = ?", (i,)):
                        deps[to] = deps.get(to, 0) + 1
        rel = {}
        for wf, n in ended.items():
            if c.execute("SELECT state FROM workflows WHERE id = ?", (wf,)).fetchone()[0] != 0: continue
        for to, n in deps.items():
            row = c.execute("UPDATE tasks SET pending_steps = pending_steps - ?1, state = CASE WHEN pending_steps = ?1 THEN 1 ELSE state END WHERE id = ?2 AND state = 8 RETURNING state, queue, workflow_id", (n, to)).fetchone()
            if row and row[0] == 1: rel[row[2]] = rel.get(row[2], 0) + 1
        for wf, n in ended.items():
            row = c.execute("UPDATE workflows SET active_steps = active_steps - ? + ? WHERE id = ? AND state = 0 RETURNING active_steps", (n, rel.get(wf, 0), wf)).fetchone()
            if row and row[0] == 0:
                c.execute("UPDATE workflows SET state = 1 WHERE id = ?", (wf,))
                c.execute("UPDATE tasks SET state = 6 WHERE workflow_id = ? AND state = 8", (wf,))
        c.execute("COMMIT")
    return time.perf_counter() - t
c = db('chord.db'); ids = fill(c, True)
tc = run_fast(c, ids)
print(f"fast chord {tc*1e6/N:.1f} us/member")
print(c.execute("SELECT state, pending_steps FROM tasks WHERE state IN (1, 8)").fetchall(), c.execute("SELECT state, active_steps FROM workflows").fetchall())
