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
//   INGEST_ADDR=127.0.0.1:8081 TOKEN=$CARRIER TRACKING_NUMBER=LM... node examples/carrier-gateway.mjs
//
// Environment: INGEST_ADDR (default 127.0.0.1:8081), TOKEN (scans:write with a carrier claim),
// CARRIER (default acme), TRACKING_NUMBER (a shipment of that carrier), SCANS (default 4),
// DROP_FIRST_STREAM=1 (demonstration: cancel the first stream right after sending, before its
// acknowledgements arrive, to show the reconnect and resend).
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
const address = env.INGEST_ADDR ?? "127.0.0.1:8081";
const carrier = env.CARRIER ?? "acme";
const trackingNumber = env.TRACKING_NUMBER;
if (!trackingNumber || !env.TOKEN) {
  console.error("set TRACKING_NUMBER and TOKEN (npm run -s token -- --scope scans:write --carrier acme)");
  process.exit(2);
}
const client = new IngestService(address, grpc.credentials.createInsecure());

// Every scan stays here until it is acknowledged (a real gateway keeps this on disk).
const unacked = new Map();
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

let attempt = 0;
function connect() {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${env.TOKEN}`);
  const call = client.StreamScans(metadata);
  const thisAttempt = attempt++;
  let closed = false;
  const reconnect = (why) => {
    if (closed) return;
    closed = true;
    if (unacked.size === 0) return finish();
    const delay = Math.min(10_000, 250 * 2 ** Math.min(thisAttempt, 6));
    console.log(`stream closed (${why}); reconnecting in ${delay} ms, resending ${unacked.size} unacknowledged scans`);
    setTimeout(connect, delay);
  };
  call.on("data", (res) => {
    for (const ack of res.acks) {
      const keep = ack.outcome === "SCAN_OUTCOME_REJECTED" && ack.reject_reason === "REJECT_REASON_UNAVAILABLE";
      console.log(`ack ${ack.event_id} ${ack.outcome.replace("SCAN_OUTCOME_", "")}${ack.detail ? ` (${ack.detail})` : ""}`);
      if (!keep) unacked.delete(ack.event_id);
    }
    if (unacked.size === 0) call.end();
  });
  call.on("error", (e) => reconnect(`${grpc.status[e.code] ?? e.code}: ${e.details}`));
  call.on("end", () => reconnect("ended by the server"));
  // Up to 500 scans per message; this example sends all it holds in one.
  call.write({ scans: [...unacked.values()] });
  if (env.DROP_FIRST_STREAM === "1" && thisAttempt === 0) setImmediate(() => call.cancel());
}

function finish() {
  console.log(`all ${count} scans acknowledged`);
  client.close();
}

connect();
