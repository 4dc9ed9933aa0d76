/**
 * What a longer JetStream duplicate window costs: nats-server memory per message held in the
 * window. JetStream keeps every `Nats-Msg-Id` published inside a stream's `duplicate_window` in
 * memory (id → sequence and time), on every replica, so the window that makes a scan resent
 * without Redis still come back DUPLICATE is paid in server memory at the stream's rate.
 *
 *   node perf/dist/ingest/dedupe-window-bench.js [--messages 100000] [--rounds 2]
 *
 * Each round starts two fresh nats-servers and publishes the same `--messages` ScanRecorded-sized
 * payloads to a stream on each: once with a recorded-event-id-shaped `Nats-Msg-Id` and a 24-hour
 * window (every id held), once with the same ids and a 1-second window (the ids pruned as they
 * expire). The servers' resident memory (`/varz` `mem`) after a settle pause is compared; the
 * difference divided by the messages is the cost per id held. Prints one JSON line, then one
 * human-readable line with the cost at the design's rates.
 */
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, nanos } from "@nats-io/transport-node";
import { startNatsServer } from "@logistics/shared/testing";

const { values: args } = parseArgs({
  options: {
    messages: { type: "string", default: "100000" },
    rounds: { type: "string", default: "2" },
  },
});
const N = Number(args.messages);
const ROUNDS = Number(args.rounds);
/** About the size of an encoded ScanRecorded event. */
const PAYLOAD = randomBytes(220);

async function rssAfterPublishing(windowMs: number): Promise<{ before: number; after: number }> {
  const server = await startNatsServer();
  const nc = await connect({ servers: server.url, noAsyncTraces: true });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: "DEDUPE", subjects: ["dedupe.>"], duplicate_window: nanos(windowMs) });
    const js = jetstream(nc);
    const mem = async () => {
      const varz = (await (await fetch(`${server.monitorUrl}/varz`)).json()) as { mem: number };
      return varz.mem;
    };
    const before = await mem();
    const inflight = new Set<Promise<unknown>>();
    for (let i = 0; i < N; i++) {
      const id = `sc-${randomBytes(16).toString("hex")}`;
      const p = js.publish(`dedupe.scan.${i % 16}`, PAYLOAD, { msgID: id }).finally(() => inflight.delete(p));
      inflight.add(p);
      if (inflight.size >= 256) await Promise.race(inflight);
    }
    await Promise.all(inflight);
    // Let the 1-second window expire and be pruned, and the Go runtime settle.
    await new Promise((r) => setTimeout(r, 3000));
    return { before, after: await mem() };
  } finally {
    await nc.close();
    await server.stop();
  }
}

const perMessage: number[] = [];
for (let round = 0; round < ROUNDS; round++) {
  const held = await rssAfterPublishing(24 * 3_600_000);
  const pruned = await rssAfterPublishing(1000);
  perMessage.push((held.after - held.before - (pruned.after - pruned.before)) / N);
}
perMessage.sort((a, b) => a - b);
const median = perMessage[Math.floor(perMessage.length / 2)] as number;
const mib = (bytes: number) => Math.round(bytes / 2 ** 20);
const summary = {
  bench: "dedupe-window",
  messages: N,
  rounds: ROUNDS,
  bytesPerHeldIdMedian: Math.round(median),
  bytesPerHeldIdRounds: perMessage.map(Math.round),
  // The design's sizing: 70 scans/s on average, 300/s at peak.
  mibPerHourAt70PerSec: mib(median * 70 * 3600),
  mibPerHourAt300PerSec: mib(median * 300 * 3600),
};
console.log(JSON.stringify(summary));
console.log(
  `# duplicate window: ~${summary.bytesPerHeldIdMedian} B per held id on each replica; ` +
    `a 1-hour window holds ${summary.mibPerHourAt70PerSec} MiB at 70 scans/s, ${summary.mibPerHourAt300PerSec} MiB at 300 scans/s`,
);
