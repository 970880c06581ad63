// The BullMQ side of `make bench`: one Worker sending each job's email with nodemailer.
//
//   node worker.mjs --redis-port P --queue NAME --smtp-port S --concurrency N [--pool]
//
// Each job's data is {messageId}; the email goes to the benchmark's SMTP sink
// (bench/sink.py) with that Message-ID, which is how the sink's receive times
// are matched to the jobs' due times. nodemailer's default transport opens a
// new SMTP connection per email, as the raw-Procrastinate baseline does with
// smtplib; --pool keeps up to N connections open instead. Everything else is
// BullMQ's defaults. Prints "ready" once the worker is connected; SIGTERM
// closes it (running jobs finish first) and exits.
//
// Sockets are opened through nodemailer's getSocket option with Nagle's algorithm
// off (setNoDelay). nodemailer leaves it on, and on a fast link every email then
// waits ~40 ms for a delayed ACK between its last two writes (45 ms per email
// sequentially instead of 3.7 ms, against bench/sink.py and aiosmtpd alike):
// BullMQ is measured at its best, not with that stall.
import net from "node:net";
import { parseArgs } from "node:util";
import { Worker } from "bullmq";
import nodemailer from "nodemailer";

const { values: args } = parseArgs({
  options: {
    "redis-host": { type: "string", default: "127.0.0.1" },
    "redis-port": { type: "string" },
    queue: { type: "string" },
    "smtp-port": { type: "string" },
    concurrency: { type: "string", default: "1" },
    pool: { type: "boolean", default: false },
  },
});
for (const name of ["redis-port", "queue", "smtp-port"]) {
  if (!args[name]) {
    console.error(`--${name} is required`);
    process.exit(2);
  }
}
const concurrency = Number(args.concurrency);

const transport = nodemailer.createTransport({
  host: "127.0.0.1",
  port: Number(args["smtp-port"]),
  secure: false,
  ignoreTLS: true,
  pool: args.pool,
  maxConnections: concurrency,
  getSocket(options, callback) {
    const socket = net.connect({ host: options.host, port: options.port, noDelay: true });
    socket.once("connect", () => callback(null, { connection: socket }));
    socket.once("error", (err) => callback(err));
  },
});

const worker = new Worker(
  args.queue,
  async (job) => {
    await transport.sendMail({
      from: "bench@example.com",
      to: "rcpt@example.com",
      subject: "bullmq",
      text: "A benchmark email.\n",
      messageId: job.data.messageId,
    });
  },
  {
    // Workers block on Redis: ioredis must not give up on a command (BullMQ's own advice).
    connection: { host: args["redis-host"], port: Number(args["redis-port"]), maxRetriesPerRequest: null },
    concurrency,
  },
);
worker.on("failed", (job, err) => console.error(`job ${job?.id} failed: ${err.message}`));
worker.on("error", (err) => console.error(`worker error: ${err.message}`));

let closing = false;
async function shutdown() {
  if (closing) return;
  closing = true;
  await worker.close();
  transport.close();
  process.exit(0);
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

await worker.waitUntilReady();
console.log("ready");
