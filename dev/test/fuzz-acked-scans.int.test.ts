import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import fc from "fast-check";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Scope } from "@logistics/shared/auth";
import { create } from "@bufbuild/protobuf";
import { ScanSchema, type Scan } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { IngestService, RejectReason, ScanOutcome } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { TrackingService } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { createSubjects, type Subjects } from "@logistics/shared/nats";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import { assertMeshSettled, createTrackedShipment, startE2eMesh, type E2eMesh } from "./e2e-mesh.js";
import { hostileMessage, hostileString } from "./hostile-messages.js";

/**
 * The fuzz suite's end-to-end half: hostile scans generated from the Scan descriptor (odd Unicode,
 * lone surrogates, NUL, extreme numbers, huge maps and strings), and well-formed scans around
 * hostile free text, for a real shipment of the caller, with only what decides ownership and
 * the event-time window pinned. Every scan is either
 * rejected at the edge with a reason, or ACCEPTED and then applied by tracking; and no consumer
 * of the mesh loops on what was accepted: every durable settles without a redelivery.
 *
 * Budget: 4 × FUZZ_RUNS scans (default 60); FUZZ_RUNS / FUZZ_SEED as in fuzz-rpcs, and
 * FUZZ_DEBUG=1 lets the services log their warnings (a consumer retrying shows why).
 */
const RUNS = 4 * Number(process.env["FUZZ_RUNS"] ?? 15);
const SEED = process.env["FUZZ_SEED"] === undefined ? undefined : Number(process.env["FUZZ_SEED"]);
const MINUTE = 60_000;
/** Raw status codes of the generic table. */
const CODES = ["IN", "PU", "AR", "DP", "CU", "OD", "DA", "PP", "EX", "CR", "RS", "DL", "ZZ"];

/**
 * Scans a carrier could send: a quarter fully hostile (every field from the descriptor), the
 * rest well-formed around hostile free text (status text, note, attribute keys and values) and
 * any position, so that many are accepted and must then travel the whole mesh.
 */
const scans: fc.Arbitrary<Scan> = fc.oneof(
  { weight: 1, arbitrary: hostileMessage(ScanSchema, { hugeItems: 200 }) },
  {
    weight: 3,
    arbitrary: fc
      .record({
        code: fc.constantFrom(...CODES),
        text: hostileString,
        note: hostileString,
        attributes: fc.dictionary(hostileString, hostileString, { maxKeys: 6 }),
        latitude: fc.double({ min: -90, max: 90, noNaN: true }),
        longitude: fc.double({ min: -180, max: 180, noNaN: true }),
        hub: fc.constantFrom("", "FRA", "ORD", "CDG", "ZZZ"),
      })
      .map((r) =>
        create(ScanSchema, {
          rawStatus: { code: r.code, text: r.text },
          note: r.note,
          attributes: r.attributes,
          location: { latitude: r.latitude, longitude: r.longitude },
          hubCode: r.hub,
        }),
      ),
  },
);

describe(`hostile scans through the whole mesh (${RUNS} scans)`, { timeout: 600_000 }, () => {
  let mesh: E2eMesh;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let subjects: Subjects;
  let trackingNumber: string;
  /** recorded event id → the carrier's event id, for every ACCEPTED scan. */
  const accepted = new Map<string, string>();
  const rejected = new Map<string, number>();

  beforeAll(async () => {
    mesh = await startE2eMesh(process.env["FUZZ_DEBUG"] ? { env: { LOG_LEVEL: "warn" } } : {});
    nc = await connect({ servers: mesh.env["NATS_URL"] });
    jsm = await jetstreamManager(nc);
    subjects = createSubjects(mesh.env["SUBJECT_PREFIX"]);
    trackingNumber = await createTrackedShipment(mesh, { carrier: "acme", customer: "cust-fuzz" });
  }, 180_000);
  afterAll(async () => {
    await nc?.close();
    await mesh?.close();
  });

  it("answers every hostile scan precisely, and applies every scan it accepts", async () => {
    const ingest = createClient(IngestService, createGrpcTransport({ baseUrl: mesh.get("ingest").url }));
    const carrier = { headers: { authorization: `Bearer ${await mesh.token([Scope.ScansWrite], { carrier: "acme" })}` } };
    await fc.assert(
      fc.asyncProperty(scans, fc.integer({ min: -29 * 24 * 60, max: 50 }), async (scan, minutes) => {
        scan.eventId = uniqueName("fz");
        scan.trackingNumber = trackingNumber;
        scan.carrierCode = "acme";
        scan.eventTime = timestampFromMs(Date.now() + minutes * MINUTE);
        try {
          const res = await ingest.submitScans({ scans: [scan] }, { ...carrier, signal: AbortSignal.timeout(20_000) });
          const ack = res.acks[0];
          assert.ok(ack, "one ack for one scan");
          if (ack.outcome === ScanOutcome.ACCEPTED) {
            assert.ok(ack.recordedEventId, "an accepted scan names its recorded event id");
            accepted.set(ack.recordedEventId, scan.eventId);
          } else {
            assert.equal(ack.outcome, ScanOutcome.REJECTED, `outcome ${ScanOutcome[ack.outcome]}`);
            assert.notEqual(ack.rejectReason, RejectReason.UNSPECIFIED, "a rejection says why");
            assert.notEqual(ack.rejectReason, RejectReason.UNAVAILABLE, `the mesh was unavailable: ${ack.detail}`);
            const reason = RejectReason[ack.rejectReason] ?? String(ack.rejectReason);
            rejected.set(reason, (rejected.get(reason) ?? 0) + 1);
          }
        } catch (e) {
          // The whole request refused at the edge (too large, malformed): precise, never Internal.
          const err = ConnectError.from(e);
          assert.ok([Code.InvalidArgument, Code.ResourceExhausted].includes(err.code), `${Code[err.code]}: ${err.rawMessage}`);
          rejected.set(Code[err.code], (rejected.get(Code[err.code]) ?? 0) + 1);
        }
      }),
      { numRuns: RUNS, ...(SEED === undefined ? {} : { seed: SEED }), endOnFailure: true },
    );

    const tracking = createClient(TrackingService, createGrpcTransport({ baseUrl: mesh.get("tracking").url }));
    const reader = { headers: { authorization: `Bearer ${await mesh.token([Scope.Admin])}` } };
    const missing = await waitFor(
      async () => {
        const seen = new Set<string>();
        let pageToken = "";
        do {
          const page = await tracking.listShipmentEvents({ trackingNumber, pageSize: 500, pageToken }, reader);
          for (const e of page.events) seen.add(e.eventId);
          pageToken = page.nextPageToken;
        } while (pageToken);
        const left = [...accepted.keys()].filter((id) => !seen.has(id));
        return left.length === 0 ? left : null;
      },
      { timeoutMs: 60_000, message: "every accepted scan applied" },
    );
    assert.deepEqual(missing, []);
    console.log(`accepted ${accepted.size}, rejected ${JSON.stringify(Object.fromEntries(rejected))}`);
  });

  it("loops on nothing it accepted: every durable settles, nothing redelivered or dead-lettered", async () => {
    await assertMeshSettled(jsm, subjects, 60_000);
  });
});
