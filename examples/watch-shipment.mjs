// Watches a shipment over the Connect protocol with nothing but fetch: WatchShipment is a
// server-streaming RPC, and Connect carries it over plain HTTP/1.1 as a POST whose response is a
// sequence of enveloped JSON messages (1 flag byte, 4-byte big-endian length, the message). Any
// language with an HTTP client can do the same; Connect and gRPC libraries do it for you.
//
//   TRACKING_URL=http://127.0.0.1:8083 TRACKING_NUMBER=LM... node examples/watch-shipment.mjs
//
// Environment: TRACKING_URL (default http://127.0.0.1:8083), TRACKING_NUMBER, TOKEN (optional:
// anonymous callers get the public view), UNTIL_STATUS (stop once the shipment has this status,
// e.g. SHIPMENT_STATUS_DELIVERED; default: watch until interrupted), MAX_UPDATES (stop after this
// many updates). A broken stream is resumed from the last sequence received (after_sequence).
const env = process.env;
const base = env.TRACKING_URL ?? "http://127.0.0.1:8083";
const trackingNumber = env.TRACKING_NUMBER;
if (!trackingNumber) {
  console.error("set TRACKING_NUMBER");
  process.exit(2);
}
const maxUpdates = Number(env.MAX_UPDATES ?? Infinity);

function envelope(message) {
  const json = Buffer.from(JSON.stringify(message));
  const head = Buffer.alloc(5);
  head.writeUInt32BE(json.length, 1);
  return Buffer.concat([head, json]);
}

let afterSequence = "0";
let updates = 0;
async function watchOnce() {
  const res = await fetch(`${base}/logistics.tracking.v1.TrackingService/WatchShipment`, {
    method: "POST",
    headers: {
      "content-type": "application/connect+json",
      "connect-protocol-version": "1",
      ...(env.TOKEN ? { authorization: `Bearer ${env.TOKEN}` } : {}),
    },
    body: envelope({ trackingNumber, afterSequence }),
  });
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  let buf = Buffer.alloc(0);
  for await (const chunk of res.body) {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
      const flags = buf[0];
      const message = JSON.parse(buf.subarray(5, 5 + buf.readUInt32BE(1)).toString("utf8"));
      buf = buf.subarray(5 + buf.readUInt32BE(1));
      if (flags & 0x02) {
        // End of stream: an error, or a clean end (the server's stream lifetime): resume.
        if (message.error) throw Object.assign(new Error(`${message.error.code}: ${message.error.message}`), { code: message.error.code });
        return false;
      }
      if (message.kind === "WATCH_UPDATE_KIND_HEARTBEAT") continue;
      afterSequence = message.sequence ?? afterSequence;
      const s = message.shipment ?? {};
      console.log(`update ${message.sequence} ${message.kind.replace("WATCH_UPDATE_KIND_", "")}: ${s.status ?? "?"}${s.lastCarrierStatus?.text ? ` (${s.lastCarrierStatus.text})` : ""}`);
      if (++updates >= maxUpdates || (env.UNTIL_STATUS && s.status === env.UNTIL_STATUS)) return true;
    }
  }
  return false;
}

for (let attempt = 0; ; attempt++) {
  try {
    if (await watchOnce()) break;
    attempt = 0;
  } catch (e) {
    if (e.code === "not_found" || e.code === "invalid_argument" || e.code === "unauthenticated") {
      console.error(e.message);
      process.exit(1);
    }
    const delay = Math.min(10_000, 250 * 2 ** attempt);
    console.log(`stream broke (${e.message}); resuming after sequence ${afterSequence} in ${delay} ms`);
    await new Promise((r) => setTimeout(r, delay));
  }
}
console.log("done");
