#!/usr/bin/env python3
"""Usage: python3 bench/supervisor_drain.py [TASKS] [single,supervised]; PG_URL=postgresql://… for PostgreSQL (a
fresh schema per run), ROUNDS=3, CONVEYOR_BIN=<folder of another build's conveyor> to measure that build. Drain of no-op tasks by `conveyor worker` in one process against `--processes 2`, on SQLite.
Fill: N tasks through a `conveyor server --no-worker` (HTTP batches of 1000), untimed. Drain: from the worker
command's start until every task succeeded (polled in the database every 100 ms, on SQLite through its partial indexes); also from the first success."""
import json, os, shutil, signal, socket, sqlite3, subprocess, sys, tempfile, time, urllib.request

# The Release build of the server project (dotnet build -c Release).
CONVEYOR = os.path.join(os.environ.get("CONVEYOR_BIN") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "Conveyor.Server", "bin", "Release", "net10.0"), "conveyor")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
modes = sys.argv[2].split(",") if len(sys.argv) > 2 else ["single", "supervised"]

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def run(mode):
    d = tempfile.mkdtemp(prefix="supbench-")
    db = os.path.join(d, "s.db")
    schema = "supbench_" + str(int(time.time() * 1000))
    url = os.environ.get("PG_URL")
    env = dict(os.environ, DATABASE_URL=(url + ("&" if "?" in url else "?") + "schema=" + schema) if url else "sqlite:///" + db, LOG_LEVEL="warning")
    for k in list(env):
        if k.startswith("CONVEYOR_"): del env[k]
    port = free_port()
    server = subprocess.Popen([CONVEYOR, "server", "--no-worker", "--port", str(port)], env=env, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    batch_url = f"http://127.0.0.1:{port}/api/v1/tasks/batch"
    body = json.dumps({"tasks": [{"task": "conveyor.noop"}] * 1000}).encode()
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/health/live"), timeout=2); break
        except Exception:
            if time.time() > deadline: raise
            time.sleep(0.1)
    for _ in range(N // 1000):
        urllib.request.urlopen(urllib.request.Request(batch_url, data=body, headers={"Content-Type": "application/json"}), timeout=30).read()
    server.send_signal(signal.SIGTERM); server.wait(30)
    args = [CONVEYOR, "worker", "--concurrency", "16"] + (["--processes", "2"] if mode == "supervised" else [])
    start = time.time()
    worker = subprocess.Popen(args, env=env, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if url:
        import subprocess as sp
        def count():
            out = sp.run(["psql", url, "-tAc", f"SELECT count(*) FROM {schema}.tasks WHERE state = 3"], capture_output=True, text=True, env=dict(os.environ, PGCONNECT_TIMEOUT="5"))
            return int(out.stdout.strip() or 0)
        con = None
    else:
        con = sqlite3.connect(db, timeout=5)
        # Two probes on the partial indexes instead of counting the succeeded tasks: a count(*) of state 3 scans the
        # whole table (about 30 MB at 200,000 tasks) ten times a second, CPU that the drain it measures needs. No-op
        # tasks only ever succeed, so "some finished" is the first success and "none ready, leased or due" the last.
        def count():
            if con.execute("SELECT EXISTS (SELECT 1 FROM tasks WHERE state = 1) OR EXISTS (SELECT 1 FROM tasks WHERE state = 2)"
                           " OR EXISTS (SELECT 1 FROM tasks WHERE state IN (0, 4))").fetchone()[0]:
                return 1 if con.execute("SELECT EXISTS (SELECT 1 FROM tasks WHERE state IN (3, 5, 6, 7))").fetchone()[0] else 0
            return con.execute("SELECT count(*) FROM tasks WHERE state = 3").fetchone()[0]
    first = None
    while True:
        done = count()
        now = time.time()
        if done > 0 and first is None: first = now
        if done >= N: break
        if now - start > 300: raise SystemExit(f"{mode}: only {done} of {N} after 300 s")
        time.sleep(0.1)
    end = time.time()
    worker.send_signal(signal.SIGTERM); worker.wait(60)
    if con: con.close()
    if url:
        subprocess.run(["psql", url, "-qc", f"DROP SCHEMA {schema} CASCADE"], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)
    return N / (end - start), N / (end - first)

results = {m: [] for m in modes}
for r in range(int(os.environ.get("ROUNDS", "3"))):
    for m in modes:
        total, steady = run(m)
        results[m].append((total, steady))
        print(f"round {r+1} {m}: {total:,.0f}/s from start, {steady:,.0f}/s from the first success", flush=True)
for m in modes:
    t = sorted(x[0] for x in results[m]); s = sorted(x[1] for x in results[m])
    print(f"{m}: median {t[len(t)//2]:,.0f}/s from start ({t[0]:,.0f}-{t[-1]:,.0f}), {s[len(s)//2]:,.0f}/s from first success ({s[0]:,.0f}-{s[-1]:,.0f})")
