#!/usr/bin/env python3
"""Usage: python3 bench/redis_slowlog.py PORT reset|report
Redis's time per command, scripts told apart by their SHA and the commands they call counted on their own, from the
SLOWLOG: `reset` makes the Redis at 127.0.0.1:PORT log every command (slowlog-log-slower-than 0, up to 2,000,000
entries) from now; `report` sums the log by command and puts the threshold back (10 ms). Logging every command costs
the server a few microseconds a command: compare shares, not totals, with INFO commandstats."""
import collections, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from redis_resp import Redis
port = int(sys.argv[1]); mode = sys.argv[2]
cmd = Redis(port).cmd
if mode == "reset":
    cmd("CONFIG", "SET", "slowlog-log-slower-than", "0"); cmd("CONFIG", "SET", "slowlog-max-len", "2000000"); cmd("SLOWLOG", "RESET"); print("reset")
else:
    entries = cmd("SLOWLOG", "GET", "-1")
    tot = collections.defaultdict(lambda: [0, 0])
    for e in entries:
        args = [a.decode(errors="replace") for a in e[3]]; name = args[0].lower()
        if name in ("evalsha", "eval"):
            key = "evalsha " + args[1][:10]
            tot[key][0] += 1; tot[key][1] += e[2]
        else:
            tot[name][0] += 1; tot[name][1] += e[2]
    for k, (c, us) in sorted(tot.items(), key=lambda kv: -kv[1][1])[:15]:
        print(f"{k:30s} calls {c:8d} total {us/1e6:7.3f} s  per call {us/c:8.1f} us")
    cmd("CONFIG", "SET", "slowlog-log-slower-than", "10000"); cmd("SLOWLOG", "RESET")
