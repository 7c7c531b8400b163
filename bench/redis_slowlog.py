#!/usr/bin/env python3
"""Usage: python3 bench/redis_slowlog.py PORT reset|report
Redis's time per command, scripts told apart by their SHA and the commands they call counted on their own, from the
SLOWLOG: `reset` makes the Redis at 127.0.0.1:PORT log every command (slowlog-log-slower-than 0, up to 2,000,000
entries) from now; `report` sums the log by command and puts the threshold back (10 ms). Logging every command costs
the server a few microseconds a command: compare shares, not totals, with INFO commandstats."""
import socket, sys, collections
port = int(sys.argv[1]); mode = sys.argv[2]
s = socket.create_connection(("127.0.0.1", port)); f = s.makefile("rb")
def cmd(*a):
    s.sendall(("*%d\r\n" % len(a) + "".join("$%d\r\n%s\r\n" % (len(str(x).encode()), x) for x in a)).encode())
    return read()
def read():
    line = f.readline().rstrip(b"\r\n"); t = line[:1]; rest = line[1:]
    if t in (b"+", b"-"): return rest.decode()
    if t == b":": return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0: return None
        d = f.read(n + 2)[:-2]; return d.decode(errors="replace")
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [read() for _ in range(n)]
    raise ValueError(line)
if mode == "reset":
    cmd("CONFIG", "SET", "slowlog-log-slower-than", "0"); cmd("CONFIG", "SET", "slowlog-max-len", "2000000"); cmd("SLOWLOG", "RESET"); print("reset")
else:
    entries = cmd("SLOWLOG", "GET", "-1")
    tot = collections.defaultdict(lambda: [0, 0])
    shas = {}
    for e in entries:
        args = e[3]; name = args[0].lower()
        if name in ("evalsha", "eval"):
            key = "evalsha " + args[1][:10] + " keys=" + args[2] + (" n=" + args[4] if len(args) > 4 else "")
            key = "evalsha " + args[1][:10]
            tot[key][0] += 1; tot[key][1] += e[2]
            shas.setdefault(args[1][:10], []).append(len(args))
        else:
            tot[name][0] += 1; tot[name][1] += e[2]
    for k, (c, us) in sorted(tot.items(), key=lambda kv: -kv[1][1])[:15]:
        print(f"{k:30s} calls {c:8d} total {us/1e6:7.3f} s  per call {us/c:8.1f} us")
    cmd("CONFIG", "SET", "slowlog-log-slower-than", "10000"); cmd("SLOWLOG", "RESET")
