"""Celery (Debian's python3-celery 5.2) as a peer of Conveyor's bench on RabbitMQ (docs/benchmarks.md#peers).

Broker RabbitMQ, no result backend (results ignored), every worker setting at its default (prefork pool, one child per
core, prefetch multiplier 4) but for the gossip, mingle and heartbeat chatter between workers, which a single worker does
not need. Run with Debian's interpreter, /usr/bin/python3. The line protocol is described in bench/peers/README.md.
"""
import os
import sys
import time

from celery import Celery, signals


def env(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"{name} is not set (the bench sets it)")
    return value


QUEUE = env("PEER_NAME")
app = Celery("bench", broker=env("PEER_URL"))
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
    broker_connection_retry_on_startup=True,
)

_redis = None
_redis_pid = None


def instrument():
    """The common instrument's connection, one per worker process (the prefork pool forks after import)."""
    global _redis, _redis_pid
    if _redis is None or _redis_pid != os.getpid():
        import redis

        _redis = redis.Redis.from_url(env("PEER_REDIS"))
        _redis_pid = os.getpid()
    return _redis


@app.task(name="noop")
def noop():
    instrument().incr(os.environ["PEER_COUNTER"])


@app.task(name="probe")
def probe(sent, measured):
    started = time.monotonic_ns()
    instrument().rpush(os.environ["PEER_SAMPLES"], f"{1 if measured else 0} {started - int(sent)}")


@signals.worker_ready.connect
def ready(**_):
    print("ready", flush=True)


def stored():
    with app.connection_for_write() as connection:
        return connection.default_channel.queue_declare(queue=QUEUE, durable=True, passive=True).message_count


def until(deadline):
    while True:
        left = (deadline - time.monotonic_ns()) / 1e9
        if left <= 0:
            return
        time.sleep(left - 0.001 if left > 0.002 else 0)


def main(command, *argv):
    if command == "enqueue":
        n, limit = int(argv[0]), float(argv[1]) * 1e9
        noop.delay()  # declares the queue and opens the connection: not timed
        print("warm 1", flush=True)
        start = time.monotonic_ns()
        count = 0
        while count < n and time.monotonic_ns() - start < limit:
            noop.delay()
            count += 1
        print(f"enqueued {count} {(time.monotonic_ns() - start) / 1e9}", flush=True)
        time.sleep(0.2)
        print(f"stored {stored()}", flush=True)
    elif command == "fill":
        n = int(argv[0])
        with app.producer_or_acquire() as producer:
            for _ in range(n):
                noop.apply_async(producer=producer)
        time.sleep(0.5)
        print(f"filled {stored()}", flush=True)
    elif command == "latency":
        rate = float(argv[0])
        for count, measured in ((int(argv[1]), False), (int(argv[2]), True)):
            start = time.monotonic_ns()
            for i in range(count):
                until(start + int(i * 1e9 / rate))
                probe.apply_async(args=[str(time.monotonic_ns()), measured])
        print(f"sent {int(argv[1]) + int(argv[2])}", flush=True)
    elif command == "worker":
        app.worker_main(["worker", "-Q", QUEUE, "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"])
    else:
        sys.exit("usage: /usr/bin/python3 peer.py enqueue|fill|latency|worker ...")


if __name__ == "__main__":
    main(*sys.argv[1:])
