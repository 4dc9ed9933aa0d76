// A webhook receiver that verifies every delivery's Logistics-Signature before trusting it
// (the algorithm of services/notification/README.md, "Verifying a delivery"), deduplicates by
// Logistics-Event-Id and answers quickly.
//
//   PORT=9000 SECRET=<signing_secret from Subscribe> node examples/webhook-receiver.mjs
//
// Subscribe it with webhook_url http://127.0.0.1:9000/hook (http and loopback are allowed under
// `npm start` only; production receivers use https on a public address).
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";

/**
 * True when `signatureHeader` (the Logistics-Signature header) signs `rawBody` (the exact bytes
 * received) with `secret` and is at most `toleranceSeconds` old.
 */
export function verifyLogisticsWebhook(rawBody, signatureHeader, secret, toleranceSeconds = 300, nowSeconds = Math.floor(Date.now() / 1000)) {
  let t;
  const signatures = [];
  for (const part of String(signatureHeader ?? "").split(",")) {
    const [key, value = ""] = part.trim().split("=", 2);
    if (key === "t" && /^\d+$/.test(value)) t = Number(value);
    if (key === "v1" && /^[0-9a-f]{64}$/.test(value)) signatures.push(Buffer.from(value, "hex"));
  }
  if (t === undefined || signatures.length === 0) return false;
  if (Math.abs(nowSeconds - t) > toleranceSeconds) return false;
  const expected = createHmac("sha256", secret).update(`${t}.`).update(rawBody).digest();
  return signatures.some((s) => timingSafeEqual(s, expected));
}

const secret = process.env.SECRET;
if (!secret) {
  console.error("set SECRET to the signing_secret that Subscribe returned");
  process.exit(2);
}
const seen = new Set(); // a real receiver keeps this in its database

const server = createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    if (req.method !== "POST" || !verifyLogisticsWebhook(body, req.headers["logistics-signature"], secret)) {
      console.log(`refused a delivery with a bad signature (${req.method} ${req.url})`);
      res.writeHead(401).end();
      return;
    }
    const eventId = String(req.headers["logistics-event-id"] ?? "");
    res.writeHead(204).end(); // answer first, work afterwards
    if (seen.has(eventId)) return;
    seen.add(eventId);
    const event = JSON.parse(body.toString("utf8"));
    console.log(`verified ${event.type} ${event.data?.tracking_number ?? ""} ${event.data?.status ?? ""} (event ${eventId})`);
  });
});
server.listen(Number(process.env.PORT ?? 9000), process.env.HOST ?? "127.0.0.1", () => {
  console.log(`listening on http://${process.env.HOST ?? "127.0.0.1"}:${server.address().port}/hook`);
});
for (const s of ["SIGINT", "SIGTERM"]) process.on(s, () => server.close(() => process.exit(0)));
