import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { Scope } from "@logistics/shared/auth";
import { ScanOutcome } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { DeadLetterReason, EventDeadLetterService } from "@logistics/shared/gen/logistics/operations/v1/dead_letters_pb.js";
import { ShipmentEventKind, TrackingService } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import { openScanStream } from "@logistics/ingest/client";
import { createTrackedShipment, startE2eMesh, type E2eMesh } from "./e2e-mesh.js";

const CARRIER = "acme";
const SCANS_CONSUMER = "tracking-scans";

/**
 * Poisoned, then fixed, then redriven, against the real services: tracking's read model refuses
 * one shipment's scans (a trigger in its own schema stands for the bug), the projector gives up
 * after TRACKING_MAX_DELIVER deliveries and dead-letters them; the trigger goes (the fix is
 * deployed) and an operator redrives them through notification's EventDeadLetterService. Each
 * scan must then be in the shipment's history exactly once, and counted as applied once.
 */
describe("dead-letter redrive through the admin RPC into the real projector", () => {
  let mesh: E2eMesh;
  let db: pg.Pool;
  let operator: Client<typeof EventDeadLetterService>;

  beforeAll(async () => {
    mesh = await startE2eMesh({ services: ["ingest", "tracking", "notification"], env: { TRACKING_MAX_DELIVER: "2" } });
    db = new pg.Pool({ connectionString: mesh.envOf("tracking")["DATABASE_URL"], max: 1 });
    const token = await mesh.token([Scope.Admin]);
    operator = createClient(
      EventDeadLetterService,
      createConnectTransport({
        baseUrl: mesh.get("notification").url,
        httpVersion: "1.1",
        interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
      }),
    );
  });
  afterAll(async () => {
    await db?.end();
    await mesh?.close();
  });

  const appliedScans = async (): Promise<number> => {
    const text = await (await fetch(mesh.get("tracking").metricsUrl)).text();
    const line = text.split("\n").find((l) => /^logistics_tracking_projected_events_total\{.*outcome="applied".*\}/.test(l) && /type="[^"]*scan/i.test(l));
    return line ? Number(line.split(" ").at(-1)) : 0;
  };

  it("applies each poisoned-then-fixed scan exactly once after the redrive, and a second redrive finds nothing", async () => {
    const trackingNumber = await createTrackedShipment(mesh, { carrier: CARRIER, customer: "redrive-shop" });
    const reader = createClient(TrackingService, createGrpcTransport({ baseUrl: mesh.get("tracking").url }));
    const readToken = await mesh.token([Scope.ShipmentsRead, Scope.Admin]);
    const scanEvents = async () =>
      (await reader.listShipmentEvents({ trackingNumber, pageSize: 500 }, { headers: { authorization: `Bearer ${readToken}` } })).events.filter(
        (e) => e.kind === ShipmentEventKind.SCAN,
      );

    // The bug: the read model refuses this shipment's events.
    await db.query(`CREATE FUNCTION refuse_redrive_test() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'refused for the test: %', NEW.tracking_number; END $$`);
    await db.query(
      `CREATE TRIGGER refuse_redrive_test BEFORE INSERT ON applied_events FOR EACH ROW
       WHEN (NEW.tracking_number = '${trackingNumber}') EXECUTE FUNCTION refuse_redrive_test()`,
    );
    const appliedBefore = await appliedScans();

    const stream = openScanStream({ address: `127.0.0.1:${mesh.get("ingest").port}`, token: await mesh.token([Scope.ScansWrite], { carrier: CARRIER }) });
    const recorded: string[] = [];
    try {
      for (const [i, code] of ["PU", "AR", "DP"].entries()) {
        const [ack] = await stream.send([
          { eventId: uniqueName(`redrive-${i}`), trackingNumber, carrierCode: CARRIER, rawStatus: { code, text: code }, eventTime: timestampFromDate(new Date(Date.now() - (3 - i) * 1000)) },
        ]);
        assert.equal(ack?.outcome, ScanOutcome.ACCEPTED, ack?.detail);
        recorded.push(ack.recordedEventId);
      }
    } finally {
      await stream.close();
    }

    const dead = await waitFor(
      async () => {
        const found = (await operator.listEventDeadLetters({ filter: { consumer: SCANS_CONSUMER }, pageSize: 100 })).deadLetters;
        return found.length === recorded.length ? found : undefined;
      },
      { timeoutMs: 60_000, message: "the three scans dead-lettered by the projector" },
    );
    assert.deepEqual(dead.map((d) => d.eventId).sort(), [...recorded].sort(), "the dead letters are our scans, by event id");
    assert.ok(dead.every((d) => d.reason === DeadLetterReason.RETRIES_EXHAUSTED), "given up after the last delivery");
    assert.equal((await scanEvents()).length, 0, "nothing applied while the bug is there");

    // The fix, then the redrive. The scans stream's duplicate window still holds their ids, so
    // they are republished under new message ids: only the projector's event-id idempotency
    // stands between a redrive and a double apply.
    await db.query("DROP TRIGGER refuse_redrive_test ON applied_events");
    const deferred = await operator.redriveEventDeadLetters({ filter: { consumer: SCANS_CONSUMER }, dryRun: true });
    assert.deepEqual([deferred.matched, deferred.redriven, deferred.deferred], [3, 0, 3], "inside the duplicate window a plain redrive waits");
    const done = await operator.redriveEventDeadLetters({ filter: { consumer: SCANS_CONSUMER }, newMessageId: true });
    assert.deepEqual([done.matched, done.redriven, done.deferred], [3, 3, 0]);

    const events = await waitFor(async () => ((await scanEvents()).length >= 3 ? scanEvents() : undefined), {
      timeoutMs: 60_000,
      message: "the redriven scans in the shipment's history",
    });
    assert.deepEqual(events.map((e) => e.eventId).sort(), [...recorded].sort(), "each scan once");
    assert.equal((await operator.listEventDeadLetters({ filter: { consumer: SCANS_CONSUMER } })).deadLetters.length, 0, "redriven dead letters are removed");
    const again = await operator.redriveEventDeadLetters({ filter: { consumer: SCANS_CONSUMER }, newMessageId: true });
    assert.equal(again.matched, 0, "a second redrive finds nothing");
    await waitFor(async () => (await appliedScans()) - appliedBefore === 3 || undefined, { message: "three scans counted as applied" });
    assert.equal((await scanEvents()).length, 3, "still each scan once");
  });
});
