import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create, toJson, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { Validator } from "@bufbuild/protovalidate";
import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { createValidateInterceptor } from "@connectrpc/validate";
import { ServiceLevel } from "../src/gen/logistics/common/v1/shipment_pb.js";
import {
  CreateShipmentRequestSchema,
  CreateShipmentResponseSchema,
  IngestService,
  StreamScansResponseSchema,
  type StreamScansRequestSchema,
} from "../src/gen/logistics/ingest/v1/ingest_pb.js";
import { createRequestValidationInterceptor } from "../src/server/request-validation.js";
import { startServer, type ServerHandle } from "../src/server/serve.js";
import { createMeshValidator } from "../src/validation/mesh-validator.js";

type CreateShipmentInit = MessageInitShape<typeof CreateShipmentRequestSchema>;

const PLACE = { countryCode: "DE", postalCode: "10115", city: "Berlin", location: { latitude: 52.52, longitude: 13.405 } };
const VALID: CreateShipmentInit = {
  idempotencyKey: "order-0001",
  carrierCode: "acme",
  customerId: "cust-1",
  origin: PLACE,
  destination: { ...PLACE, countryCode: "NL", city: "Rotterdam", hubCode: "RTM" },
  serviceLevel: ServiceLevel.STANDARD,
  parcel: { weightGrams: 1200, lengthMm: 300 },
  readyTime: { seconds: 1_800_000_000n, nanos: 0 },
  partnerCarrierCodes: ["ups", "dhl-express"],
};

/** Invalid requests, one or many violations each, in rules the precheck compiles and in CEL. */
const INVALID: Array<[string, CreateShipmentInit]> = [
  ["a short idempotency key", { ...VALID, idempotencyKey: "short" }],
  ["a lower-case tracking number", { ...VALID, trackingNumber: "abcd12345" }],
  ["a latitude beyond the pole", { ...VALID, destination: { ...PLACE, location: { latitude: 90.5, longitude: 0 } } }],
  ["an unknown hub code pattern", { ...VALID, origin: { ...PLACE, hubCode: "fra" } }],
  ["a parcel of 0 g and a 5 m 1 mm side", { ...VALID, parcel: { weightGrams: 0, heightMm: 5001 } }],
  ["an undefined service level", { ...VALID, serviceLevel: 99 as ServiceLevel }],
  ["the same partner twice", { ...VALID, partnerCarrierCodes: ["ups", "ups"] }],
  ["nine partners", { ...VALID, partnerCarrierCodes: Array.from({ length: 9 }, (_, i) => `p${i}x`) }],
  ["a ready time in year 1 (mesh_time, CEL)", { ...VALID, readyTime: { seconds: -62_135_596_800n, nanos: 0 } }],
  [
    "everything at once",
    { idempotencyKey: "", carrierCode: "ACME", customerId: "", serviceLevel: ServiceLevel.UNSPECIFIED, partnerCarrierCodes: ["X", "X"], readyTime: { seconds: 1_800_000_000n, nanos: -1 } },
  ],
];

/** A validator that counts the messages it judges. */
function counting(validator: Validator): Validator & { judged: number } {
  const counted = {
    judged: 0,
    validate<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>) {
      counted.judged++;
      return validator.validate(schema, message);
    },
  };
  return counted;
}

/** IngestService's CreateShipment and StreamScans, answering whatever reaches them, behind `validation`. */
async function startIngestEcho(validation: Interceptor): Promise<{ server: ServerHandle; handled: () => number }> {
  let handled = 0;
  const server = await startServer({
    port: 0,
    host: "127.0.0.1",
    services: [IngestService],
    interceptors: [validation],
    routes: (router) =>
      router.service(IngestService, {
        createShipment(req) {
          handled++;
          return create(CreateShipmentResponseSchema, { trackingNumber: req.trackingNumber || "ASSIGNED0001" });
        },
        async *streamScans(reqs) {
          for await (const req of reqs) {
            handled++;
            yield create(StreamScansResponseSchema, { acks: req.scans.map((s) => ({ eventId: s.eventId })) });
          }
        },
      }),
  });
  return { server, handled: () => handled };
}

/** What a caller sees of a call: the answer, or the error's code, message and violations. */
async function outcome(call: () => Promise<unknown>): Promise<unknown> {
  try {
    return { ok: await call() };
  } catch (e) {
    const err = ConnectError.from(e);
    return { code: Code[err.code], message: err.rawMessage, violations: err.findDetails(ViolationsSchema).map((v) => toJson(ViolationsSchema, v)) };
  }
}

type StreamScansInit = MessageInitShape<typeof StreamScansRequestSchema>;

/** The acks a StreamScans call answers for `messages`, then how it ended. */
async function streamOutcome(client: Client<typeof IngestService>, messages: StreamScansInit[]): Promise<unknown> {
  const acks: string[][] = [];
  const ended = await outcome(async () => {
    for await (const res of client.streamScans((async function* () {
      yield* messages;
    })())) {
      acks.push(res.acks.map((a) => a.eventId));
    }
    return "end";
  });
  return { acks, ended };
}

describe("createRequestValidationInterceptor", () => {
  let today: { server: ServerHandle; handled: () => number };
  let prechecked: { server: ServerHandle; handled: () => number };
  const validator = counting(createMeshValidator());
  beforeAll(async () => {
    today = await startIngestEcho(createValidateInterceptor({ validator: createMeshValidator() }));
    prechecked = await startIngestEcho(createRequestValidationInterceptor({ validator }));
  });
  afterAll(async () => {
    await Promise.all([today?.server.close({ graceMs: 1000 }), prechecked?.server.close({ graceMs: 1000 })]);
  });

  const clients = (protocol: "grpc" | "connect") => {
    const transport = (url: string) => (protocol === "grpc" ? createGrpcTransport({ baseUrl: url }) : createConnectTransport({ baseUrl: url, httpVersion: "1.1" }));
    return { today: createClient(IngestService, transport(today.server.url)), prechecked: createClient(IngestService, transport(prechecked.server.url)) };
  };

  it.each(["grpc", "connect"] as const)("answers each invalid request with the InvalidArgument and violations @connectrpc/validate answers (%s)", async (protocol) => {
    const c = clients(protocol);
    const handledBefore = prechecked.handled();
    for (const [what, init] of INVALID) {
      const expected = await outcome(() => c.today.createShipment(init));
      const got = await outcome(() => c.prechecked.createShipment(init));
      assert.equal((expected as { code?: string }).code, "InvalidArgument", `${what}: ${JSON.stringify(expected)}`);
      assert.ok(((expected as { violations: unknown[] }).violations[0] as { violations: unknown[] }).violations.length > 0, what);
      assert.deepEqual(got, expected, what);
    }
    assert.equal(prechecked.handled(), handledBefore, "no invalid request reached the handler");
  });

  it.each(["grpc", "connect"] as const)("serves a valid request without the interpreted validator, and one the precheck cannot vouch for after it (%s)", async (protocol) => {
    const c = clients(protocol);
    const judged = validator.judged;
    assert.deepEqual(await outcome(() => c.prechecked.createShipment(VALID)), await outcome(() => c.today.createShipment(VALID)));
    assert.equal(validator.judged, judged, "the precheck vouched for it");
    // A surrogate pair under a length rule: left to protovalidate, which finds it valid.
    const emoji = { ...VALID, origin: { ...PLACE, city: "Berlin \u{1F4E6}" } };
    const got = await outcome(() => c.prechecked.createShipment(emoji));
    assert.deepEqual(got, { ok: create(CreateShipmentResponseSchema, { trackingNumber: "ASSIGNED0001" }) });
    assert.equal(validator.judged, judged + 1);
  });

  it("validates each message of a stream as the handler reads it, as @connectrpc/validate does", async () => {
    const c = clients("grpc");
    const messages: StreamScansInit[] = [{ scans: [{ eventId: "e-1" }] }, { scans: [{ eventId: "e-2" }, { eventId: "e-3" }] }, { scans: [] }, { scans: [{ eventId: "e-4" }] }];
    const expected = await streamOutcome(c.today, messages);
    assert.deepEqual((expected as { acks: unknown }).acks, [["e-1"], ["e-2", "e-3"]]);
    assert.equal((expected as { ended: { code?: string } }).ended.code, "InvalidArgument");
    assert.deepEqual(await streamOutcome(c.prechecked, messages), expected);
    const valid: StreamScansInit[] = [{ scans: [{ eventId: "e-5" }] }, { scans: [{ eventId: "e-6" }], traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" }];
    assert.deepEqual(await streamOutcome(c.prechecked, valid), { acks: [["e-5"], ["e-6"]], ended: { ok: "end" } });
  });
});
