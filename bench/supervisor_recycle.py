#!/usr/bin/env python3
"""Usage: python3 bench/supervisor_recycle.py [TASKS] [PER_CHILD]; ROUNDS=3, CONVEYOR_BIN=<folder of a build's conveyor>.
What a recycle costs against what a start costs (issue 10), on SQLite, from the tasks' own timestamps.
Fill: TASKS no-op tasks through a `conveyor server --no-worker` (HTTP batches of 1,000), untimed. Then, each round:
- start: `conveyor worker --concurrency 16` from the command's start (the clock here) to its first lease (started_at);
- recycle: `conveyor worker --processes 1 --concurrency 16 --max-tasks-per-child PER_CHILD` over a fresh fill: for each
  replacement child, from the last finish of the child before it to its own first lease (lease_owner names each child).
A recycle pays the old child's exit (it finishes what it runs, hands back what it holds) and the new child's start, or
with a spare (the default with recycling on) the spare's first fetch; a start pays the command's start alone. The
script prints each and their medians, and each drain's rate from its first lease to its last finish (the one
worker without recycling against the supervisor that recycles), which also counts what starting processes beside the
working ones costs the drain."""
import json, os, shutil, signal, socket, sqlite3, statistics, subprocess, sys, tempfile, time, urllib.request

CONVEYOR = os.path.join(os.environ.get("CONVEYOR_BIN") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "Conveyor.Server", "bin", "Release", "net10.0"), "conveyor")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
PER_CHILD = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def fill(d, env):
    port = free_port()
    server = subprocess.Popen([CONVEYOR, "server", "--no-worker", "--port", str(port)], env=env, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=2); break
        except Exception:
            if time.time() > deadline: raise
            time.sleep(0.1)
    body = json.dumps({"tasks": [{"task": "conveyor.noop"}] * 1000}).encode()
    for _ in range(N // 1000):
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/tasks/batch", data=body, headers={"Content-Type": "application/json"}), timeout=30).read()
    server.send_signal(signal.SIGTERM); server.wait(30)

def drain(args, d, db, env):
    """Runs the worker command until every task succeeded; returns its start (ms) and (owner, first lease, last finish) rows."""
    start_ms = time.time() * 1000
    worker = subprocess.Popen([CONVEYOR, "worker", "--concurrency", "16"] + args, env=env, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    con = sqlite3.connect(db, timeout=5)
    deadline = time.time() + 300
    while con.execute("SELECT EXISTS (SELECT 1 FROM tasks WHERE state IN (0, 1, 2, 4))").fetchone()[0]:
        if time.time() > deadline: raise SystemExit("not drained after 300 s")
        time.sleep(0.1)
    worker.send_signal(signal.SIGTERM); worker.wait(60)
    rows = con.execute("SELECT lease_owner, min(started_at), max(finished_at), count(*) FROM tasks GROUP BY lease_owner ORDER BY 2").fetchall()
    con.close()
    return start_ms, rows

def run():
    d = tempfile.mkdtemp(prefix="recyclebench-")
    db = os.path.join(d, "s.db")
    env = dict(os.environ, DATABASE_URL="sqlite:///" + db, LOG_LEVEL="warning")
    for k in list(env):
        if k.startswith("CONVEYOR_"): del env[k]
    fill(d, env)
    start_ms, rows = drain([], d, db, env)
    start = rows[0][1] - start_ms
    plain_rate = N / (max(r[2] for r in rows) - rows[0][1]) * 1000
    os.remove(db); [os.remove(db + s) for s in ("-wal", "-shm") if os.path.exists(db + s)]
    fill(d, env)
    _, rows = drain(["--processes", "1", "--max-tasks-per-child", str(PER_CHILD)], d, db, env)
    gaps = [rows[i][1] - rows[i - 1][2] for i in range(1, len(rows))]
    recycling_rate = N / (max(r[2] for r in rows) - rows[0][1]) * 1000
    shutil.rmtree(d, ignore_errors=True)
    return start, gaps, [r[3] for r in rows], plain_rate, recycling_rate

starts, recycles, ratios = [], [], []
for r in range(int(os.environ.get("ROUNDS", "3"))):
    start, gaps, counts, plain_rate, recycling_rate = run()
    starts.append(start); recycles.extend(gaps); ratios.append(recycling_rate / plain_rate)
    print(f"round {r+1}: start {start:.0f} ms; recycles {', '.join(f'{g:.0f}' for g in gaps)} ms (tasks a child: {', '.join(map(str, counts))}); "
          f"drain {plain_rate:,.0f}/s without recycling, {recycling_rate:,.0f}/s recycling ({recycling_rate / plain_rate:.2f})", flush=True)
print(f"start: median {statistics.median(starts):.0f} ms ({min(starts):.0f}-{max(starts):.0f}); "
      f"recycle: median {statistics.median(recycles):.0f} ms ({min(recycles):.0f}-{max(recycles):.0f}), {len(recycles)} recycles; "
      f"recycling drain / plain drain: median {statistics.median(ratios):.2f}")
