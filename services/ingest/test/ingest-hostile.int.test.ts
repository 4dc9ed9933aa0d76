import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { Scope } from "@logistics/shared/auth";
import { violationPaths } from "@logistics/shared/testing";
import {
  CreateShipmentRequestSchema,
  CreateShipmentResponseSchema,
  IngestService,
  RejectReason,
  ScanOutcome,
  type CreateShipmentRequest,
} from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { bearer, shipmentRequest, startIngestHarness, submitScans, validScan, type IngestHarness } from "./ingest-harness.js";

/**
 * The attacks of the hostile-input report, replayed against ingest over real sockets: values that
 * ingest used to acknowledge although no store downstream can hold them. Every one is now refused
 * at the edge with the field that is wrong.
 */
describe("ingest refuses values no store downstream can hold", () => {
  let h: IngestHarness;
  beforeAll(async () => {
    h = await startIngestHarness();
    await h.createShipments("acme");
  });
  afterAll(async () => {
    await h?.close();
  });

  const second = 1_000;
  const scanCases: Array<[string, Parameters<typeof validScan>[2], string]> = [
    ["a NUL in the carrier's status text", { rawStatus: { code: "AR", text: "Arrived\u0000" } }, "raw_status.text"],
    ["a NUL in the carrier's status code", { rawStatus: { code: "A\u0000", text: "" } }, "raw_status.code"],
    ["a NUL in the note", { note: "left at door\u0000" }, "note"],
    ["a NUL in an attribute value", { attributes: { gate: "7\u0000" } }, 'attributes["gate"]'],
    ["a NUL in an attribute key", { attributes: { "ga\u0000te": "7" } }, 'attributes["ga\u0000te"]'],
    ["negative nanos", { eventTime: { seconds: BigInt(Math.floor(Date.now() / second) - 60), nanos: -5 } }, "event_time"],
    ["nanos beyond a second", { eventTime: { seconds: BigInt(Math.floor(Date.now() / second) - 60), nanos: 2e9 } }, "event_time"],
    ["seconds = 1e15", { eventTime: { seconds: 10n ** 15n, nanos: 0 } }, "event_time"],
    ["year 1", { eventTime: { seconds: -62135596800n, nanos: 0 } }, "event_time"],
  ];

  it("answers each hostile scan REJECTED / INVALID naming the field, accepts the valid one beside them, and stores only that one", async () => {
    const md = bearer(await h.token({ carrier: "acme" }));
    const scans = [validScan("acme", "h-ok"), ...scanCases.map(([, over], i) => validScan("acme", `h-${i}`, over))];
    const res = await submitScans(h.grpcClient(), md, scans);
    assert.equal(res.acks.length, scans.length);
    assert.equal(res.acks[0]?.outcome, ScanOutcome.ACCEPTED);
    scanCases.forEach(([what, , field], i) => {
      const ack = res.acks[i + 1]!;
      assert.equal(ack.outcome, ScanOutcome.REJECTED, what);
      assert.equal(ack.rejectReason, RejectReason.INVALID, what);
      assert.deepEqual(
        ack.violations.map((v) => v.field),
        [field],
        `${what}: ${ack.violations.map((v) => `${v.field} ${v.message}`).join("; ")}`,
      );
    });
    assert.deepEqual(await h.storedScanIds(), [res.acks[0]!.recordedEventId]);
  });

  it("refuses an unpaired surrogate sent through Connect JSON (binary Protobuf cannot even carry one) with InvalidArgument naming the field", async () => {
    const token = await h.token({ carrier: "acme" });
    const scan = {
      eventId: "h-json-1",
      trackingNumber: "TN0000000001",
      carrierCode: "acme",
      rawStatus: { code: "AR", text: "Arrived" },
      eventTime: new Date(Date.now() - 60_000).toISOString(),
    };
    const before = (await h.storedScanIds()).length;
    // JSON.stringify writes U+D800 alone as the escape \ud800; the server must not turn it into text.
    const res = await fetch(`${h.svc.url}/logistics.ingest.v1.IngestService/SubmitScans`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ scans: [{ ...scan, note: "\ud800" }] }),
    });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { code: string; message: string };
    assert.equal(body.code, "invalid_argument");
    assert.match(body.message, /Scan\.note .*invalid UTF8/);
    assert.equal((await h.storedScanIds()).length, before);
  });

  it("lets a grpc-js gateway read error messages as written (no %3A or %2F left in them)", async () => {
    const client = h.grpcClient();
    const createShipment = (md: grpc.Metadata) =>
      new Promise<grpc.ServiceError>((resolve, reject) =>
        client.makeUnaryRequest(
          "/logistics.ingest.v1.IngestService/CreateShipment",
          (m: CreateShipmentRequest) => Buffer.from(toBinary(CreateShipmentRequestSchema, m)),
          (b: Buffer) => fromBinary(CreateShipmentResponseSchema, b),
          shipmentRequest("short"),
          md,
          (e) => (e ? resolve(e) : reject(new Error("expected an error"))),
        ),
      );
    const invalid = await createShipment(bearer(await h.token({ scopes: [Scope.ShipmentsWrite] })));
    assert.equal(invalid.code, grpc.status.INVALID_ARGUMENT);
    assert.match(invalid.details, /^idempotency_key: .*\[string\.min_len\]$/);
    const denied = await createShipment(bearer(await h.token({ carrier: "acme" })));
    assert.equal(denied.code, grpc.status.PERMISSION_DENIED);
    assert.match(denied.details, / \/logistics\.ingest\.v1\.IngestService\/CreateShipment\b/);
    assert.doesNotMatch(`${invalid.details} ${denied.details}`, /%[0-9A-F]{2}/);
  });

  describe("CreateShipment", () => {
    const cases: Array<[string, Record<string, unknown>, string[]]> = [
      ["a NUL in the origin city", { origin: { countryCode: "DE", city: "Frank\u0000furt", location: { latitude: 50, longitude: 8 } } }, ["origin.city"]],
      ["a NUL in the customer reference", { customerReference: "order\u0000" }, ["customer_reference"]],
      ["ready_time in year 1", { readyTime: timestampFromMs(Date.parse("0001-01-01T00:00:00Z")) }, ["ready_time"]],
      ["ready_time in year 9999", { readyTime: timestampFromMs(Date.parse("9999-12-31T00:00:00Z")) }, ["ready_time"]],
      ["ready_time with seconds = 1e15", { readyTime: { seconds: 10n ** 15n, nanos: 0 } }, ["ready_time"]],
      ["ready_time with nanos = -1", { readyTime: { seconds: 1_800_000_000n, nanos: -1 } }, ["ready_time"]],
    ];
    for (const [what, over, fields] of cases) {
      it(`answers InvalidArgument naming the field for ${what}, and publishes nothing`, async () => {
        const client = createClient(IngestService, createGrpcTransport({ baseUrl: h.svc.url }));
        const headers = { authorization: `Bearer ${await h.token({ scopes: [Scope.ShipmentsWrite] })}` };
        const err = await client.createShipment(shipmentRequest(`hostile-${what}`, over), { headers }).then(
          () => assert.fail("expected InvalidArgument"),
          (e: unknown) => ConnectError.from(e),
        );
        assert.equal(err.code, Code.InvalidArgument, err.message);
        assert.deepEqual(violationPaths(err), fields);
      });
    }
  });
});
