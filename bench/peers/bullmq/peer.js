// BullMQ as a peer of Conveyor's bench on Redis (docs/benchmarks.md#peers): a Worker with concurrency 50, every
// other option at its default (completed jobs are kept, as Conveyor keeps finished tasks).
"use strict";

const { Queue, Worker } = require("bullmq");
const Redis = require("ioredis");
const { env, say, enqueueOneByOne, sendProbes, recordProbe, main } = require("../common");

const QUEUE = "bench";
const connection = () => {
  const url = new URL(env("PEER_URL"));
  return { host: url.hostname, port: Number(url.port || 6379), password: url.password || undefined, maxRetriesPerRequest: null };
};
const queue = () => new Queue(QUEUE, { connection: connection(), prefix: env("PEER_NAME") });

main({
  async enqueue(argv) {
    const q = queue();
    try {
      await enqueueOneByOne(argv, () => q.add("noop", {}), () => q.getWaitingCount());
    } finally {
      await q.close();
    }
  },

  async fill(argv) {
    const n = Number(argv[0]);
    const q = queue();
    try {
      for (let done = 0; done < n; ) {
        const size = Math.min(1000, n - done);
        await q.addBulk(Array.from({ length: size }, () => ({ name: "noop", data: {} })));
        done += size;
      }
      say(`filled ${await q.getWaitingCount()}`);
    } finally {
      await q.close();
    }
  },

  async latency(argv) {
    const q = queue();
    try {
      await sendProbes(argv, (payload) => q.add("probe", payload));
    } finally {
      await q.close();
    }
  },

  async worker() {
    const redis = new Redis(env("PEER_REDIS"));
    const counter = env("PEER_COUNTER");
    const worker = new Worker(
      QUEUE,
      async (job) => {
        if (job.name === "probe") {
          await recordProbe(redis, job.data);
        } else {
          await redis.incr(counter);
        }
      },
      { connection: connection(), prefix: env("PEER_NAME"), concurrency: 50 },
    );
    worker.on("error", (error) => process.stderr.write(`${error}\n`));
    await worker.waitUntilReady();
    say("ready");
    const stop = async () => {
      await worker.close();
      process.exit(0);
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
  },
});
