"""A minimal RESP2 client for the bench's Redis tools (redis_script_cost.py, redis_lua_parts.py, redis_slowlog.py):
commands over one loopback connection, replies as bytes, ints, lists or None; pipelining by send() then read()."""
import socket


class Redis:
    def __init__(self, port):
        self._socket = socket.create_connection(("127.0.0.1", port))
        self._reader = self._socket.makefile("rb")

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        return b"".join(out)

    def send(self, payload):
        self._socket.sendall(payload)

    def read(self):
        line = self._reader.readline().rstrip(b"\r\n")
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._reader.read(n + 2)[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ValueError(line)

    def cmd(self, *args):
        self.send(self.encode(*args))
        return self.read()

    def commandstats(self):
        """INFO commandstats as {command: (calls, usec)}."""
        stats = {}
        for line in self.cmd("INFO", "commandstats").decode().splitlines():
            if line.startswith("cmdstat_"):
                name, values = line.split(":", 1)
                fields = dict(kv.split("=") for kv in values.split(","))
                stats[name[len("cmdstat_"):]] = (int(fields["calls"]), int(fields["usec"]))
        return stats
