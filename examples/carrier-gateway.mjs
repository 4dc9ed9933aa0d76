// A carrier gateway that streams scans to ingest over gRPC (StreamScans), written as an
// integrator would: grpc-js with the contracts loaded at run time from the committed descriptor
// set proto/logistics.protoset (no generated code, no project script). protobufjs's .proto parser
// (under @grpc/proto-loader's loadSync) cannot read the validation rules' extension syntax, so
// protobufjs-based stacks load the descriptor set; protoc, buf and grpcurl read proto/ directly.
//
// It keeps every scan until ingest acknowledges it. When the stream breaks (network, ingest
// restarting: Unavailable), it reconnects with backoff and resends every unacknowledged scan with
// the same event_id, so nothing is lost or counted twice: scans ingest already stored come back as
// DUPLICATE. A REJECTED scan with reject_reason UNAVAILABLE is kept and resent too.
//
// Regions (docs/regions.md): INGEST_ENDPOINTS lists ingest endpoints across regions, nearest
// first. The gateway uses the first; when an endpoint cannot be reached or drops the stream with
// UNAVAILABLE it fails over to the next one at once and resends what is unacknowledged there, with
// the same event ids (the region that stored a scan and the one it is resent to hold it under the
// same event id, and every read model applies an event id once). After trying them all it backs
// off and starts again at the first, so it returns to its nearest region once that is back (a
// gateway that runs for days would also move back when the first answers again while it streams
// elsewhere). While failed over, a scan answered UNKNOWN_SHIPMENT may belong to a shipment created
// in the lost region whose directory entry has not reached this one yet: it is kept and resent
// with backoff, at most UNKNOWN_RETRIES times (default 30); on the first endpoint that answer is final.
//
//   INGEST_ENDPOINTS=https://ingest.eu.example.com,https://ingest.us.example.com \
//     TOKEN=$CARRIER_TOKEN TRACKING_NUMBER=LM... node examples/carrier-gateway.mjs
//
// Environment: INGEST_ENDPOINTS (comma-separated; https://host[:port] uses TLS, http://host:port
// or host:port plaintext), else INGEST_ADDR (one host:port, default 127.0.0.1:8081); TOKEN
// (scans:write with a carrier claim), CARRIER_CODE (default acme), TRACKING_NUMBER (a shipment of that
// carrier), SCANS (default 4), DROP_FIRST_STREAM=1 (demonstration: cancel the first stream right
// after sending, before its acknowledgements arrive, to show the reconnect and resend).
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const protoset = join(dirname(fileURLToPath(import.meta.url)), "..", "proto", "logistics.protoset");
const definition = protoLoader.loadFileDescriptorSetFromBuffer(readFileSync(protoset), {
  keepCase: true,
  enums: String,
  longs: String,
  defaults: true,
});
const { IngestService } = grpc.loadPackageDefinition(definition).logistics.ingest.v1;

const env = process.env;
const carrier = env.CARRIER_CODE ?? "acme";
const trackingNumber = env.TRACKING_NUMBER;
if (!trackingNumber || !env.TOKEN) {
  console.error("set TRACKING_NUMBER and TOKEN (npm run -s token -- --scope scans:write --carrier acme)");
  process.exit(2);
}

/** One ingest endpoint: its gRPC target (host:port) and channel credentials. */
function endpoint(raw) {
  const text = raw.trim();
  if (!/^[a-z]+:\/\//.test(text)) return { label: text, target: text, credentials: grpc.credentials.createInsecure() };
  const url = new URL(text);
  const tls = url.protocol === "https:";
  const port = url.port || (tls ? "443" : "80");
  return { label: text, target: `${url.hostname}:${port}`, credentials: tls ? grpc.credentials.createSsl() : grpc.credentials.createInsecure() };
}
const endpoints = (env.INGEST_ENDPOINTS ?? env.INGEST_ADDR ?? "127.0.0.1:8081").split(",").filter((e) => e.trim()).map(endpoint);
const clients = new Map();
function clientFor(i) {
  if (!clients.has(i)) clients.set(i, new IngestService(endpoints[i].target, endpoints[i].credentials));
  return clients.get(i);
}

// Every scan stays here until it is acknowledged (a real gateway keeps this on disk).
const unacked = new Map();
// Resends per event id after UNKNOWN_SHIPMENT from a failover endpoint.
const unknownResends = new Map();
const unknownRetries = Number(env.UNKNOWN_RETRIES ?? 30);
// Scans answered with a final rejection (fix the scan; resending cannot help).
const rejectedFinal = [];
const count = Number(env.SCANS ?? 4);
const codes = [
  ["PU", "Picked up"],
  ["AR", "Arrived at hub"],
  ["DP", "Departed hub"],
  ["OD", "Out for delivery"],
  ["DL", "Delivered"],
];
const start = Date.now() - count * 60_000;
for (let i = 0; i < count; i++) {
  const [code, text] = codes[Math.min(i, codes.length - 1)];
  const at = start + i * 60_000;
  const scan = {
    event_id: `${carrier}-${trackingNumber}-${i}`, // stable: the same id on every resend
    tracking_number: trackingNumber,
    carrier_code: carrier,
    raw_status: { code, text },
    hub_code: code === "AR" || code === "DP" ? "FRA" : "",
    event_time: { seconds: String(Math.floor(at / 1000)), nanos: (at % 1000) * 1e6 },
  };
  unacked.set(scan.event_id, scan);
}

// `current`: the endpoint in use; `tried`: endpoints that failed in this round; `failures`:
// rounds and same-endpoint retries since the last ack (the backoff exponent).
let current = 0;
let tried = 0;
let failures = 0;
let streams = 0;
function connect() {
  const ep = endpoints[current];
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${env.TOKEN}`);
  const call = clientFor(current).StreamScans(metadata);
  const thisStream = streams++;
  if (endpoints.length > 1) console.log(`streaming to ${ep.label} (endpoint ${current + 1} of ${endpoints.length})`);
  let closed = false;
  let acked = false;
  const reconnect = (why, code) => {
    if (closed) return;
    closed = true;
    if (unacked.size === 0) return finish();
    if (acked) tried = 0;
    // The endpoint (or its region) is unreachable: the next one, at once, while the round lasts.
    if (code === grpc.status.UNAVAILABLE && endpoints.length > 1 && tried + 1 < endpoints.length) {
      tried++;
      current = (current + 1) % endpoints.length;
      console.log(`stream to ${ep.label} closed (${why}); failing over to ${endpoints[current].label}, resending ${unacked.size} unacknowledged scans`);
      return setImmediate(connect);
    }
    // A new round from the nearest endpoint (the same one when there is only one), after a backoff.
    if (code === grpc.status.UNAVAILABLE || acked) {
      tried = 0;
      current = 0;
    }
    const delay = Math.min(10_000, 250 * 2 ** Math.min(failures++, 6));
    console.log(`stream closed (${why}); reconnecting in ${delay} ms, resending ${unacked.size} unacknowledged scans`);
    setTimeout(connect, delay);
  };
  call.on("data", (res) => {
    const held = [];
    for (const ack of res.acks) {
      const rejected = ack.outcome === "SCAN_OUTCOME_REJECTED";
      const tries = unknownResends.get(ack.event_id) ?? 0;
      const hold = rejected && ack.reject_reason === "REJECT_REASON_UNKNOWN_SHIPMENT" && current !== 0 && tries < unknownRetries;
      const keep = hold || (rejected && ack.reject_reason === "REJECT_REASON_UNAVAILABLE");
      console.log(`ack ${ack.event_id} ${ack.outcome.replace("SCAN_OUTCOME_", "")}${ack.detail ? ` (${ack.detail})` : ""}`);
      if (!keep) unacked.delete(ack.event_id);
      if (rejected && !keep) rejectedFinal.push(ack.event_id);
      if (hold) {
        unknownResends.set(ack.event_id, tries + 1);
        held.push(ack.event_id);
      }
    }
    if (held.length > 0) {
      // Not sourced here yet (created in the lost region): resend on this stream after a backoff.
      const delay = Math.min(10_000, 250 * 2 ** Math.min(Math.max(...held.map((id) => unknownResends.get(id))) - 1, 6));
      setTimeout(() => {
        const scans = held.map((id) => unacked.get(id)).filter(Boolean);
        if (!closed && scans.length > 0) call.write({ scans });
      }, delay);
    }
    acked = true;
    failures = 0;
    if (unacked.size === 0) call.end();
  });
  call.on("error", (e) => reconnect(`${grpc.status[e.code] ?? e.code}: ${e.details}`, e.code));
  call.on("end", () => reconnect("ended by the server", undefined));
  // Up to 500 scans per message; this example sends all it holds in one.
  call.write({ scans: [...unacked.values()] });
  if (env.DROP_FIRST_STREAM === "1" && thisStream === 0) setImmediate(() => call.cancel());
}

function finish() {
  const where = endpoints.length > 1 ? ` (last endpoint ${endpoints[current].label})` : "";
  if (rejectedFinal.length > 0) {
    console.error(`${rejectedFinal.length} of ${count} scans rejected for good: ${rejectedFinal.join(", ")}${where}`);
    process.exitCode = 1;
  } else console.log(`all ${count} scans acknowledged${where}`);
  for (const c of clients.values()) c.close();
}

connect();
