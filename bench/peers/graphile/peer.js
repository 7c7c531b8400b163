// Graphile Worker as a peer of Conveyor's bench on PostgreSQL (docs/benchmarks.md#peers).
// Settings from its performance page (https://worker.graphile.org/docs/performance): concurrentJobs 24,
// maxPoolSize 25, localQueue size 500, batched completion (completeJobBatchDelay and failJobBatchDelay 0).
"use strict";

const { run, makeWorkerUtils, runMigrations, Logger } = require("graphile-worker");
const Redis = require("ioredis");
const { env, say, enqueueOneByOne, sendProbes, recordProbe, main } = require("../common");

const quiet = new Logger(() => (level, message) => {
  if (level === "error") process.stderr.write(`${message}\n`);
});

const options = () => ({
  connectionString: env("PEER_URL"),
  schema: env("PEER_NAME"),
  logger: quiet,
});

async function utils() {
  const workerUtils = await makeWorkerUtils(options());
  await workerUtils.migrate();
  return workerUtils;
}

const countQueued = (workerUtils) =>
  workerUtils.withPgClient(async (client) => {
    const result = await client.query(`select count(*)::int as n from "${env("PEER_NAME")}"._private_jobs`);
    return result.rows[0].n;
  });

main({
  async migrate() {
    await runMigrations(options());
    say("migrated");
  },

  async enqueue(argv) {
    const workerUtils = await utils();
    try {
      await enqueueOneByOne(argv, () => workerUtils.addJob("noop", {}), () => countQueued(workerUtils));
    } finally {
      await workerUtils.release();
    }
  },

  async fill(argv) {
    const n = Number(argv[0]);
    const workerUtils = await utils();
    try {
      for (let done = 0; done < n; ) {
        const size = Math.min(1000, n - done);
        await workerUtils.addJobs(Array.from({ length: size }, () => ({ identifier: "noop", payload: {} })));
        done += size;
      }
      say(`filled ${await countQueued(workerUtils)}`);
    } finally {
      await workerUtils.release();
    }
  },

  async analyze() {
    const workerUtils = await utils();
    try {
      await workerUtils.withPgClient((client) => client.query(`analyze "${env("PEER_NAME")}"._private_jobs`));
      say("analyzed");
    } finally {
      await workerUtils.release();
    }
  },

  async latency(argv) {
    const workerUtils = await utils();
    try {
      await sendProbes(argv, (payload) => workerUtils.addJob("probe", payload));
    } finally {
      await workerUtils.release();
    }
  },

  async worker() {
    const redis = new Redis(env("PEER_REDIS"));
    const counter = env("PEER_COUNTER");
    const runner = await run({
      ...options(),
      concurrency: 24,
      maxPoolSize: 25,
      noHandleSignals: false,
      preset: {
        worker: {
          concurrentJobs: 24,
          maxPoolSize: 25,
          localQueue: { size: 500 },
          completeJobBatchDelay: 0,
          failJobBatchDelay: 0,
        },
      },
      taskList: {
        noop: async () => {
          await redis.incr(counter);
        },
        probe: async (payload) => {
          await recordProbe(redis, payload);
        },
      },
    });
    say("ready");
    await runner.promise;
  },
});
