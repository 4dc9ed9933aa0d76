/**
 * What one scan costs between regions (docs/regions.md, "Costs"): two nats-servers with their own
 * JetStream domains (`eu`, `us`), `us` a leaf node of `eu` with the deny lists the region chart
 * sets (`leafnodeDenyList`), each with the mesh's scans stream as the services create it; `us`
 * (REGION_PEERS=eu) sources `eu`'s scans through `$JS.eu.API`. Scans
 * are published in `eu` the way ingest publishes them (the catalog publisher: subject, headers,
 * `Nats-Msg-Id`), and the leaf connection's byte counters (`/leafz` on `us`) are read before and
 * after. Also prints the encoded ScanRecorded sizes and the bytes the origin stream stores per scan.
 *
 *   npm run build && node perf/dist/regions/sourcing-bytes.js [--events 2000]
 *
 * No TLS and no trace context (with tracing on, `traceparent` adds 70 bytes of header per event).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { ScanRecordedSchema, type ScanRecorded } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { createCatalogPublisher, createEventCatalog, publication } from "@logistics/shared/events";
import { createSubjects, DEFAULT_SUBJECT_PREFIX, ensureStreams, leafnodeDenyList } from "@logistics/shared/nats";
import { getFreePort, startNatsServer, waitFor } from "@logistics/shared/testing";

const { values: args } = parseArgs({ options: { events: { type: "string", default: "2000" } } });
const events = Number(args.events);
const prefix = DEFAULT_SUBJECT_PREFIX;

interface Leaf {
  in_bytes: number;
  out_bytes: number;
  in_msgs: number;
}

/** A scan as a carrier sends one at a hub (`hub`) or at a doorstep (a location instead). */
function scanRecorded(i: number, at: "hub" | "door"): ScanRecorded {
  const now = Date.now();
  return create(ScanRecordedSchema, {
    eventId: `sc-${(BigInt(i + 1) * 0x9e3779b97f4a7c15n).toString(16).padStart(32, "0").slice(-32)}`,
    scan: {
      eventId: `acme-LM4K7Q2ZP9X3-${i}`,
      trackingNumber: "LM4K7Q2ZP9X3",
      carrierCode: "acme",
      rawStatus: at === "hub" ? { code: "AR", text: "Arrived at hub" } : { code: "OD", text: "Out for delivery" },
      ...(at === "hub" ? { hubCode: "FRA" } : { location: { latitude: 41.8781136, longitude: -87.6297982 } }),
      eventTime: timestampFromMs(now - 60_000),
    },
    status: ShipmentStatus.IN_TRANSIT,
    kind: at === "hub" ? ScanKind.HUB_ARRIVAL : ScanKind.OUT_FOR_DELIVERY,
    recordedAt: timestampFromMs(now),
    region: "eu",
  });
}

const dir = await mkdtemp(join(tmpdir(), "sourcing-bytes-"));
const leafPort = await getFreePort();
const accounts = { MESH: { jetstream: "enabled", users: [{ user: "mesh", password: "mesh" }] } };
const deny = leafnodeDenyList(prefix);
await writeFile(
  join(dir, "eu.conf"),
  JSON.stringify({ jetstream: { domain: "eu" }, accounts, leafnodes: { port: leafPort, authorization: { users: [{ user: "us", password: "leaf", account: "MESH" }] } } }),
);
await writeFile(
  join(dir, "us.conf"),
  JSON.stringify({
    jetstream: { domain: "us" },
    accounts,
    leafnodes: { remotes: [{ urls: [`nats-leaf://us:leaf@127.0.0.1:${leafPort}`], account: "MESH", deny_imports: deny, deny_exports: deny }] },
  }),
);
const eu = await startNatsServer({ configFile: join(dir, "eu.conf"), serverName: "eu-1" });
const us = await startNatsServer({ configFile: join(dir, "us.conf"), serverName: "us-1" });
const leafz = async (): Promise<Leaf | undefined> => ((await (await fetch(`${us.monitorUrl}/leafz`)).json()) as { leafs?: Leaf[] }).leafs?.[0];
const auth = { user: "mesh", pass: "mesh" };
const ncEu = await connect({ servers: eu.url, ...auth });
const ncUs = await connect({ servers: us.url, ...auth });
try {
  await waitFor(async () => (await leafz()) !== undefined, { timeoutMs: 15_000, message: "us joined eu as a leaf node" });
  const subjects = createSubjects(prefix);
  const stream = subjects.streams.scans;
  const [jsmEu, jsmUs] = [await jetstreamManager(ncEu), await jetstreamManager(ncUs)];
  await ensureStreams(jsmEu, [stream]);
  // As the services create it in us with REGION_PEERS=eu.
  await ensureStreams(jsmUs, [stream], { peers: ["eu"] });

  const hub = scanRecorded(0, "hub");
  console.log(`ScanRecorded, protobuf: ${toBinary(ScanRecordedSchema, hub).length} B at a hub, ${toBinary(ScanRecordedSchema, scanRecorded(0, "door")).length} B with a location`);

  const catalog = createEventCatalog(prefix);
  const publisher = createCatalogPublisher({ js: jetstream(ncEu) });
  const before = (await leafz())!;
  const started = performance.now();
  for (let k = 0; k < events; k += 250) {
    const batch = [];
    for (let i = k; i < Math.min(events, k + 250); i++) batch.push(publication(catalog.events.scanRecorded, scanRecorded(i, i % 2 ? "hub" : "door"), { region: "eu", carrier: "acme" }));
    const settled = await publisher.publishAll(batch);
    if (settled.some((r) => r.status === "rejected")) throw new Error("a publish in eu failed");
  }
  await waitFor(async () => (await jsmUs.streams.info(stream.name)).state.messages >= events, { timeoutMs: 120_000, intervalMs: 50, message: `us sourced ${events} scans` });
  const sourcedMs = performance.now() - started;
  const after = (await leafz())!;
  const origin = (await jsmEu.streams.info(stream.name)).state;
  const inBytes = after.in_bytes - before.in_bytes;
  console.log(`origin stream (eu) stores ${(origin.bytes / origin.messages).toFixed(1)} B per scan`);
  console.log(
    `${events} scans sourced by us in ${(sourcedMs / 1000).toFixed(1)} s: the leaf connection carried ${inBytes} B eu -> us ` +
      `(${(inBytes / events).toFixed(1)} B per scan, ${after.in_msgs - before.in_msgs} messages) and ${after.out_bytes - before.out_bytes} B us -> eu`,
  );
} finally {
  await ncEu.close();
  await ncUs.close();
  await us.stop();
  await eu.stop();
  await rm(dir, { recursive: true, force: true });
}
