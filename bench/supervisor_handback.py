#!/usr/bin/env python3
"""Usage: python3 bench/supervisor_handback.py [BUILD_DIR...]   (ROUNDS=3, IDLE=12; Linux, SQLite)

What the first exit of a child costs the supervisor of `conveyor worker --processes 2 --concurrency 16
--max-tasks-per-child 2` (LOG_LEVEL=warning as bench/supervisor_rss.sh, or $LOG_LEVEL; a fresh SQLite file per start),
for each build (default: this checkout's Release build, `dotnet build src/Conveyor.Server -c Release`), the builds
taking turns. Children are found in /proc (their CONVEYOR_WORKER__ID), leases in the database:
  kill:    4 tasks sleeping 10 min are leased by the children; the child holding most is killed with SIGKILL. Measured:
           the time from the kill until no task is leased by that child any more (the database polled every 5 ms), and
           until the supervisor's line "... was killed by signal 9 ...; N leases handed back" arrived; the supervisor's
           VmRSS IDLE s after start (before the kill) and IDLE s after the kill.
  recycle: a fresh start, 4 no-op tasks (a child recycles after 2); the supervisor's VmRSS IDLE s after the first
           child exited.
One line per start, then each build's medians (min-max)."""
import os, re, signal, sqlite3, statistics, subprocess, sys, tempfile, threading, time, shutil

ROUNDS = int(os.environ.get("ROUNDS", "3"))
IDLE = float(os.environ.get("IDLE", "12"))
HERE = os.path.dirname(os.path.abspath(__file__))
builds = sys.argv[1:] or [os.path.join(HERE, "..", "src", "Conveyor.Server", "bin", "Release", "net10.0")]


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


class Supervisor:
    def __init__(self, build, work):
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        self.env.update(DATABASE_URL=f"sqlite:///{work}/r.db", LOG_LEVEL=os.environ.get("LOG_LEVEL", "warning"))
        self.build, self.work, self.lines = build, work, []
        self.proc = subprocess.Popen([os.path.join(build, "conveyor"), "worker", "--processes", "2", "--concurrency", "16",
                                      "--max-tasks-per-child", "2"], cwd=work, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
        self.started = time.monotonic()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait_for(self, pattern, timeout=60, after=0.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                if at >= after and re.search(pattern, line):
                    return at, line
            time.sleep(0.01)
        raise SystemExit(f"{self.build}: no line matching {pattern!r} within {timeout} s:\n" + "\n".join(l for _, l in self.lines))

    def children(self):
        """The running children by worker id (a hand-back process, also a child, has no worker id)."""
        found, pids = {}, []
        # Each thread lists the children it started.
        for task in os.listdir(f"/proc/{self.proc.pid}/task"):
            try:
                with open(f"/proc/{self.proc.pid}/task/{task}/children") as f:
                    pids += [int(p) for p in f.read().split()]
            except FileNotFoundError:
                continue
        for pid in pids:
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
            except (FileNotFoundError, ProcessLookupError):
                continue
            if b"CONVEYOR_SUPERVISOR_PID" in env and b"CONVEYOR_WORKER__ID" in env:
                found[env[b"CONVEYOR_WORKER__ID"].decode()] = pid
        return found

    def wait_for_children(self, count=2, timeout=60):
        deadline = time.monotonic() + timeout
        while len(self.children()) < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.build}: {count} children did not start")
            time.sleep(0.05)
        return self.children()

    def enqueue(self, task, args, count):
        for _ in range(count):
            subprocess.run([os.path.join(self.build, "conveyor"), "enqueue", task, "--args", args, "--max-attempts", "3"],
                           cwd=self.work, env=self.env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def kill_run(build):
    work = tempfile.mkdtemp(prefix="handback-")
    sup = Supervisor(build, work)
    try:
        sup.wait_for_children()
        time.sleep(max(0.0, IDLE - (time.monotonic() - sup.started)))
        idle = rss(sup.proc.pid)
        sup.enqueue("conveyor.sleep", '{"ms":600000}', 4)
        db = sqlite3.connect(os.path.join(work, "r.db"), timeout=5)
        deadline = time.monotonic() + 60
        while True:
            owners = [o for (o,) in db.execute("SELECT lease_owner FROM tasks WHERE state = 2")]
            if len(owners) == 4:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{build}: the tasks were not leased")
            time.sleep(0.05)
        victim = max(set(owners), key=owners.count)
        held = owners.count(victim)
        killed = time.monotonic()
        os.kill(sup.children()[victim], signal.SIGKILL)
        while db.execute("SELECT count(*) FROM tasks WHERE state = 2 AND lease_owner = ?", (victim,)).fetchone()[0] > 0:
            if time.monotonic() - killed > 60:
                raise SystemExit(f"{build}: the killed child's leases did not come back within 60 s")
            time.sleep(0.005)
        back = time.monotonic() - killed
        line_at, line = sup.wait_for(r"was killed by signal 9", after=killed)
        db.close()
        time.sleep(max(0.0, IDLE - (time.monotonic() - killed)))
        after = rss(sup.proc.pid)
        return idle, after, back, line_at - killed, held, line
    finally:
        sup.stop()
        shutil.rmtree(work, ignore_errors=True)


def recycle_run(build):
    work = tempfile.mkdtemp(prefix="handback-")
    sup = Supervisor(build, work)
    try:
        first = set(sup.wait_for_children().values())
        sup.enqueue("conveyor.noop", "{}", 4)
        deadline = time.monotonic() + 60
        while first <= set(sup.children().values()):
            if time.monotonic() > deadline:
                raise SystemExit(f"{build}: no child recycled")
            time.sleep(0.01)
        at = time.monotonic()
        time.sleep(max(0.0, IDLE - (time.monotonic() - at)))
        line = next((l for _, l in sup.lines if "recycled" in l), "(no line at this log level)")
        return rss(sup.proc.pid), line
    finally:
        sup.stop()
        shutil.rmtree(work, ignore_errors=True)


results = {b: {"idle": [], "kill": [], "back": [], "line": [], "recycle": []} for b in builds}
for r in range(1, ROUNDS + 1):
    for b in builds:
        idle, after, back, line, held, text = kill_run(b)
        load = open("/proc/loadavg").read().split()[0]
        print(f"{b} round {r} kill: supervisor {idle} kB idle, {after} kB {IDLE:.0f} s after the kill; {held} leases back "
              f"{back * 1000:.0f} ms after the kill, its line at {line * 1000:.0f} ms; load {load}\n    {text.strip()}", flush=True)
        recycled, text = recycle_run(b)
        load = open("/proc/loadavg").read().split()[0]
        print(f"{b} round {r} recycle: supervisor {recycled} kB {IDLE:.0f} s after the first recycle; load {load}\n    {text.strip()}", flush=True)
        for key, value in (("idle", idle), ("kill", after), ("back", back * 1000), ("line", line * 1000), ("recycle", recycled)):
            results[b][key].append(value)
for b in builds:
    def fmt(key, unit):
        v = sorted(results[b][key])
        return f"{statistics.median(v):,.0f} {unit} ({v[0]:,.0f}-{v[-1]:,.0f})"
    print(f"{b}: supervisor idle {fmt('idle', 'kB')}, after a kill {fmt('kill', 'kB')}, after a recycle {fmt('recycle', 'kB')}; "
          f"leases back {fmt('back', 'ms')} after the kill, the supervisor's line at {fmt('line', 'ms')}; {ROUNDS} rounds")
