import * as assert from "node:assert/strict";
import { execFile, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { promisify } from "node:util";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Scope } from "@logistics/shared/auth";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ShipmentEventKind, TrackingService } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { getFreePort, repoRoot, waitFor } from "@logistics/shared/testing";
import { afterAll, beforeAll, describe, it } from "vitest";
import { startE2eMesh, type E2eMesh } from "./e2e-mesh.js";

/*
 * The integrator kit runs: the README's curl commands and the programs under examples/, each
 * against a live mesh, as a user would run them (separate processes, only the public contracts).
 */

interface Program {
  readonly proc: ChildProcess;
  output(): string;
  readonly exited: Promise<number | null>;
}
const programs: Program[] = [];

function run(file: string, env: Record<string, string>): Program {
  const proc = spawn(process.execPath, [join(repoRoot, "examples", file)], { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  proc.stdout!.on("data", (b: Buffer) => (out += b.toString("utf8")));
  proc.stderr!.on("data", (b: Buffer) => (out += b.toString("utf8")));
  const p = { proc, output: () => out, exited: new Promise<number | null>((r) => proc.once("exit", (code) => r(code))) };
  programs.push(p);
  return p;
}

async function waitOutput(p: Program, pattern: RegExp, timeoutMs = 60_000): Promise<void> {
  await waitFor(() => pattern.test(p.output()), { timeoutMs, intervalMs: 50, message: `output to match ${pattern}:\n${p.output().slice(-3000)}` });
}

/** A Connect unary call with JSON, as curl makes it. */
async function connectJson(baseUrl: string, method: string, body: unknown, token?: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${baseUrl}/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as Record<string, unknown>;
  assert.equal(res.status, 200, `${method}: ${JSON.stringify(json)}`);
  return json;
}

const execFileAsync = promisify(execFile);
const hasCurl = spawnSync("curl", ["--version"]).status === 0;

describe("integrator examples", () => {
  let mesh: E2eMesh;
  let internal: string;
  let carrier: string;

  beforeAll(async () => {
    mesh = await startE2eMesh({ services: ["ingest", "tracking", "notification"], env: { NOTIFICATION_POLL_INTERVAL_MS: "100" } });
    internal = await mesh.token([Scope.ShipmentsWrite, Scope.ScansWrite, Scope.SubscriptionsWrite]);
    carrier = await mesh.token([Scope.ScansWrite], { carrier: "acme" });
  });
  afterAll(async () => {
    for (const p of programs) p.proc.kill("SIGKILL");
    await mesh?.close();
  });

  it.skipIf(!hasCurl)("the README's curl commands create a shipment, submit a scan and read it back (skipped without curl)", async () => {
    const readme = readFileSync(join(repoRoot, "README.md"), "utf8");
    const block = /<!-- curl-examples:start -->\n```sh\n([\s\S]*?)```\n<!-- curl-examples:end -->/.exec(readme)?.[1];
    assert.ok(block, "README has the curl examples block");
    const commands = block
      .replaceAll("http://127.0.0.1:8081", mesh.get("ingest").url)
      .replaceAll("http://127.0.0.1:8083", mesh.get("tracking").url)
      .replaceAll("http://127.0.0.1:8084", mesh.get("notification").url)
      .split(/\n\s*\n/)
      .map((c) => c.trim());
    assert.equal(commands.length, 4);
    const customer = await mesh.token([Scope.ShipmentsRead, Scope.SubscriptionsWrite, Scope.SubscriptionsRead], { customer: "cust-42" });
    // Asynchronously: the mesh answers from this very process.
    const sh = async (command: string, env: Record<string, string>) => {
      const { stdout } = await execFileAsync("sh", ["-c", command], { env: { ...process.env, TOKEN: internal, CARRIER_TOKEN: carrier, CUSTOMER_TOKEN: customer, ...env }, timeout: 30_000 });
      return stdout;
    };
    const created = JSON.parse(await sh(commands[0]!, {})) as { trackingNumber?: string };
    const tn = created.trackingNumber;
    assert.match(tn ?? "", /^[A-Z0-9]{8,30}$/, JSON.stringify(created));
    const submitted = JSON.parse(await sh(commands[1]!, { TN: tn! })) as { acks: Array<{ outcome: string; eventId: string }> };
    assert.deepEqual(
      submitted.acks.map((a) => [a.eventId, a.outcome]),
      [[`acme-${tn}-pickup`, "SCAN_OUTCOME_ACCEPTED"]],
    );
    await waitFor(
      async () => {
        const got = JSON.parse(await sh(commands[2]!, { TN: tn! })) as { shipment?: { trackingNumber?: string; status?: string } };
        return got.shipment?.trackingNumber === tn && got.shipment?.status === "SHIPMENT_STATUS_IN_TRANSIT";
      },
      { timeoutMs: 30_000, intervalMs: 200, message: `${tn} in transit after its pickup scan, read back with curl` },
    );
    const subscribed = JSON.parse(await sh(commands[3]!, { TN: tn! })) as { subscription?: { subscriptionId?: string; trackingNumber?: string }; signingSecret?: string };
    assert.ok(subscribed.subscription?.subscriptionId, JSON.stringify(subscribed));
    assert.equal(subscribed.subscription?.trackingNumber, tn, JSON.stringify(subscribed));
    assert.ok((subscribed.signingSecret ?? "").length >= 32, JSON.stringify(subscribed));
  });

  /** An acme shipment from Frankfurt, created over Connect JSON; its tracking number. */
  async function createShipment(idempotencyKey: string, destination: { countryCode: string; city: string; location: { latitude: number; longitude: number } }): Promise<string> {
    const created = await connectJson(
      mesh.get("ingest").url,
      "logistics.ingest.v1.IngestService/CreateShipment",
      {
        idempotencyKey,
        carrierCode: "acme",
        customerId: "cust-examples",
        serviceLevel: "SERVICE_LEVEL_STANDARD",
        origin: { countryCode: "DE", city: "Frankfurt", location: { latitude: 50.11, longitude: 8.68 } },
        destination,
        parcel: { weightGrams: 1200 },
      },
      internal,
    );
    return String(created["trackingNumber"]);
  }

  it("a gateway reconnects and resends unacknowledged scans; a watcher and a verifying webhook receiver see the delivery", async () => {
    const tn = await createShipment("examples-test-1", { countryCode: "US", city: "Chicago", location: { latitude: 41.88, longitude: -87.63 } });

    const hookPort = await getFreePort();
    const sub = await connectJson(
      mesh.get("notification").url,
      "logistics.notification.v1.NotificationService/Subscribe",
      { trackingNumber: tn, eventTypes: ["NOTIFICATION_EVENT_TYPE_STATUS_CHANGED"], webhookUrl: `http://127.0.0.1:${hookPort}/hook` },
      internal,
    );
    const receiver = run("webhook-receiver.mjs", { PORT: String(hookPort), SECRET: String(sub["signingSecret"]) });
    await waitOutput(receiver, /listening on/);
    // A forged delivery is refused.
    const forged = await fetch(`http://127.0.0.1:${hookPort}/hook`, {
      method: "POST",
      headers: { "logistics-signature": `t=${Math.floor(Date.now() / 1000)},v1=${"0".repeat(64)}` },
      body: "{}",
    });
    assert.equal(forged.status, 401);

    const watcher = run("watch-shipment.mjs", { TRACKING_URL: mesh.get("tracking").url, TRACKING_NUMBER: tn, UNTIL_STATUS: "SHIPMENT_STATUS_DELIVERED" });
    await waitOutput(watcher, /update \d+ SNAPSHOT/);

    const gateway = run("carrier-gateway.mjs", {
      INGEST_ADDR: new URL(mesh.get("ingest").url).host,
      TOKEN: carrier,
      TRACKING_NUMBER: tn,
      SCANS: "5",
      DROP_FIRST_STREAM: "1",
    });
    assert.equal(await gateway.exited, 0, gateway.output());
    const out = gateway.output();
    assert.match(out, /stream closed \(CANCELLED.*\); reconnecting in \d+ ms, resending 5 unacknowledged scans/);
    assert.match(out, /all 5 scans acknowledged/);
    for (let i = 0; i < 5; i++) assert.match(out, new RegExp(`ack acme-${tn}-${i} (ACCEPTED|DUPLICATE)`));

    assert.equal(await watcher.exited, 0, watcher.output());
    assert.match(watcher.output(), /SHIPMENT_STATUS_DELIVERED/);
    await waitOutput(receiver, new RegExp(`verified shipment.status_changed ${tn} delivered`));
    assert.match(receiver.output(), /refused a delivery with a bad signature/);

    // Resending never counted a scan twice.
    const tracking = createClient(TrackingService, createGrpcTransport({ baseUrl: mesh.get("tracking").url }));
    const history = await tracking.listShipmentEvents({ trackingNumber: tn, pageSize: 100 });
    const scans = history.events.filter((e) => e.kind === ShipmentEventKind.SCAN);
    assert.equal(scans.length, 5);
    assert.equal(scans.at(-1)?.scanKind, ScanKind.DELIVERED);
  });

  it("a gateway whose scans are rejected for good says so and exits non-zero", async () => {
    const tn = await createShipment("examples-test-rejected", { countryCode: "FR", city: "Paris", location: { latitude: 48.86, longitude: 2.35 } });
    // The token is acme's; scans naming another carrier are WRONG_CARRIER, a final rejection.
    const gateway = run("carrier-gateway.mjs", {
      INGEST_ADDR: new URL(mesh.get("ingest").url).host,
      TOKEN: carrier,
      CARRIER_CODE: "globex",
      TRACKING_NUMBER: tn,
      SCANS: "2",
    });
    assert.equal(await gateway.exited, 1, gateway.output());
    const out = gateway.output();
    assert.match(out, new RegExp(`ack globex-${tn}-0 REJECTED`));
    assert.match(out, new RegExp(`2 of 2 scans rejected for good: globex-${tn}-0, globex-${tn}-1`));
    assert.doesNotMatch(out, /all 2 scans acknowledged/);
  });

  it("a gateway given endpoints across regions fails over from an unreachable first one and resends there", async () => {
    const tn = await createShipment("examples-test-failover", { countryCode: "FR", city: "Paris", location: { latitude: 48.86, longitude: 2.35 } });
    // The "nearest region" is a port nothing listens on: a region that is gone.
    const lost = `http://127.0.0.1:${await getFreePort()}`;
    const live = mesh.get("ingest").url;
    const gateway = run("carrier-gateway.mjs", { INGEST_ENDPOINTS: `${lost},${live}`, TOKEN: carrier, TRACKING_NUMBER: tn, SCANS: "3" });
    assert.equal(await gateway.exited, 0, gateway.output());
    const out = gateway.output();
    assert.match(out, new RegExp(`streaming to ${lost} \\(endpoint 1 of 2\\)`));
    assert.match(out, new RegExp(`stream to ${lost} closed \\(UNAVAILABLE: .*\\); failing over to ${live}, resending 3 unacknowledged scans`));
    assert.match(out, new RegExp(`all 3 scans acknowledged \\(last endpoint ${live}\\)`));
    for (let i = 0; i < 3; i++) assert.match(out, new RegExp(`ack acme-${tn}-${i} ACCEPTED`));

    const tracking = createClient(TrackingService, createGrpcTransport({ baseUrl: mesh.get("tracking").url }));
    await waitFor(
      async () => (await tracking.listShipmentEvents({ trackingNumber: tn, pageSize: 100 })).events.filter((e) => e.kind === ShipmentEventKind.SCAN).length === 3,
      { timeoutMs: 30_000, intervalMs: 100, message: `the 3 scans of ${tn} in its history once each` },
    );
  });
});
