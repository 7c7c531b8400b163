// Shared by the Node peers (graphile, bullmq): the line protocol the bench reads (bench/peers/README.md).
"use strict";

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set (the bench sets it)`);
  }
  return value;
};

/** CLOCK_MONOTONIC in nanoseconds, the clock of .NET's Stopwatch, Ruby's and Python's monotonic clocks on Linux. */
const now = () => process.hrtime.bigint();

const say = (line) => process.stdout.write(line + "\n");

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits for an absolute deadline (ns on the monotonic clock): a late send does not delay the ones after it. */
async function until(deadline) {
  for (;;) {
    const left = Number(deadline - now()) / 1e6;
    if (left <= 0) return;
    await sleep(left > 2 ? left - 1 : 0);
  }
}

/** enqueue N SECONDS: one task at a time, each awaited, until N or SECONDS. The first call (which connects) is not timed. */
async function enqueueOneByOne(argv, addOne, countStored) {
  const n = Number(argv[0]);
  const limit = BigInt(Math.round(Number(argv[1]) * 1e9));
  await addOne();
  say("warm 1");
  const start = now();
  let count = 0;
  while (count < n && now() - start < limit) {
    await addOne();
    count++;
  }
  const elapsed = Number(now() - start) / 1e9;
  say(`enqueued ${count} ${elapsed}`);
  say(`stored ${await countStored()}`);
}

/** latency RATE WARM MEASURED: paced probes, each carrying the monotonic time just before its enqueue. */
async function sendProbes(argv, addProbe) {
  const rate = Number(argv[0]);
  const warm = Number(argv[1]);
  const measured = Number(argv[2]);
  const pending = [];
  const send = async (count, m) => {
    const start = now();
    for (let i = 0; i < count; i++) {
      await until(start + BigInt(Math.round((i * 1e9) / rate)));
      pending.push(addProbe({ t: now().toString(), m }));
    }
  };
  await send(warm, false);
  await send(measured, true);
  await Promise.all(pending);
  say(`sent ${warm + measured}`);
}

/** What a probe does when it starts: one RPUSH of "m latency_ns" (m is 1 for a measured probe). */
function recordProbe(redis, payload) {
  const started = now();
  return redis.rpush(env("PEER_SAMPLES"), `${payload.m ? 1 : 0} ${started - BigInt(payload.t)}`);
}

function main(commands) {
  const [command, ...argv] = process.argv.slice(2);
  const run = commands[command];
  if (!run) {
    process.stderr.write(`usage: ${process.argv[1]} ${Object.keys(commands).join("|")} …\n`);
    process.exit(2);
  }
  run(argv).then(
    (code) => {
      if (command !== "worker") process.exit(code ?? 0);
    },
    (error) => {
      process.stderr.write(`error ${error && error.stack ? error.stack : error}\n`);
      process.exit(1);
    },
  );
}

module.exports = { env, now, say, sleep, enqueueOneByOne, sendProbes, recordProbe, main };
