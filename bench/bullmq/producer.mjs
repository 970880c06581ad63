// The BullMQ side of `make bench`: one client adding jobs one at a time (`queue.add`).
//
//   node producer.mjs --redis-port P --queue NAME --count N --due-ms T --tag TAG
//
// Job i carries the Message-ID <TAG-i@bench.localhost> and is delayed so that it
// comes due at T (milliseconds since the epoch; each job's delay is T minus the
// moment it is added, never below 0). BullMQ's default job options otherwise.
// Prints one JSON line: {"added": N, "seconds": time spent in the adds alone}.
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { Queue } from "bullmq";

const { values: args } = parseArgs({
  options: {
    "redis-host": { type: "string", default: "127.0.0.1" },
    "redis-port": { type: "string" },
    queue: { type: "string" },
    count: { type: "string" },
    "due-ms": { type: "string" },
    tag: { type: "string" },
  },
});
for (const name of ["redis-port", "queue", "count", "due-ms", "tag"]) {
  if (!args[name]) {
    console.error(`--${name} is required`);
    process.exit(2);
  }
}
const count = Number(args.count);
const due = Number(args["due-ms"]);

const queue = new Queue(args.queue, {
  connection: { host: args["redis-host"], port: Number(args["redis-port"]) },
});
await queue.waitUntilReady();

const started = performance.now();
for (let i = 0; i < count; i++) {
  await queue.add("send", { messageId: `<${args.tag}-${i}@bench.localhost>` }, { delay: Math.max(0, due - Date.now()) });
}
const seconds = (performance.now() - started) / 1000;
await queue.close();
console.log(JSON.stringify({ added: count, seconds }));
