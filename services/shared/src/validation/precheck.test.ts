import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { clearExtension, clone, create, createFileRegistry, hasExtension, type DescMessage } from "@bufbuild/protobuf";
import { DescriptorProtoSchema, FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { message as messageRulesExt } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { ScanSchema } from "../gen/logistics/common/v1/scan_pb.js";
import { ServiceLevel } from "../gen/logistics/common/v1/shipment_pb.js";
import {
  CreateShipmentRequestSchema,
  HandOverShipmentRequestSchema,
  StreamScansRequestSchema,
  SubmitScansRequestSchema,
} from "../gen/logistics/ingest/v1/ingest_pb.js";
import {
  file_logistics_tracking_v1_tracking,
  GetShipmentRequestSchema,
  ListShipmentEventsRequestSchema,
  SearchShipmentsRequestSchema,
  WatchShipmentRequestSchema,
} from "../gen/logistics/tracking/v1/tracking_pb.js";
import { allMessages, MESH_FILES, withDependencies } from "../testing/mesh-contracts.js";
import { isPlainValue } from "../testing/plain-value.js";
import { seededRandom } from "../testing/seeded-random.js";
import { createMeshValidator } from "./mesh-validator.js";
import { compilePrecheck } from "./precheck.js";

const validator = createMeshValidator();

/** Every file of the mesh's contracts and their imports, by name. */
const meshFiles = new Map(withDependencies(MESH_FILES).map((f) => [`${f.name}.proto`, f]));

/** Values per field, valid and invalid, at and around every bound of scan.proto's rules. */
const POOL = {
  eventId: ["e-1", "a".repeat(128), "a".repeat(129), "", "with space", "é", "a/b", "x.y:z_1-2"],
  trackingNumber: ["ABCD1234", "A".repeat(30), "A".repeat(31), "ABCD123", "abcd12345", "ABCD 12345"],
  carrierCode: ["acme", "a1", "a".repeat(32), "a".repeat(33), "a", "Acme", "1acme", "acme_x", "dhl-express"],
  rawStatus: [
    { code: "AR", text: "" },
    { code: "x".repeat(64), text: "t".repeat(512) },
    { code: "x".repeat(65), text: "" },
    { code: "", text: "" },
    { code: "A\0R", text: "" },
    { code: "AR", text: "t".repeat(513) },
    { code: "AR", text: "lone \uD800 surrogate" },
    { code: "AR", text: "emoji \u{1F4E6} ok" },
    { code: "\u{1F4E6}".repeat(64), text: "" },
    undefined,
  ],
  eventTime: [
    { seconds: 1_700_000_000n, nanos: 0 },
    { seconds: 946_684_800n, nanos: 0 },
    { seconds: 946_684_799n, nanos: 999_999_999 },
    { seconds: 4_102_444_799n, nanos: 999_999_999 },
    { seconds: 4_102_444_800n, nanos: 0 },
    { seconds: 1_700_000_000n, nanos: -1 },
    { seconds: 1_700_000_000n, nanos: 1_000_000_000 },
    undefined,
  ],
  hubCode: ["", "FRA", "FRANKFUR", "FRANKFURT", "fr", "FR"],
  location: [
    undefined,
    { latitude: 0, longitude: 0 },
    { latitude: -90, longitude: 180 },
    { latitude: 90.0001, longitude: 0 },
    { latitude: 0, longitude: -180.5 },
    { latitude: Number.NaN, longitude: 0 },
  ],
  note: ["", "n".repeat(512), "n".repeat(513), "nul\0", "ok note"],
  attributes: [
    {},
    { k: "v" },
    Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, "v"])),
    Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, "v"])),
    { "": "v" },
    { ["k".repeat(65)]: "v" },
    { k: "v".repeat(257) },
    { k: "v\0" },
  ] as Array<Record<string, string>>,
};

/** Values per field of a message, the first of each valid; `undefined` leaves the field unset. */
type Pools = Readonly<Record<string, readonly unknown[]>>;

function pick<T>(xs: readonly T[], rnd: () => number): T {
  return xs[Math.floor(rnd() * xs.length)] as T;
}

const show = (v: unknown): string => JSON.stringify(v, (_, x: unknown) => (typeof x === "bigint" ? String(x) : x));

/**
 * Judges `runs` messages of `desc` drawn from `pools` (mostly valid values, so valid messages and
 * single violations are both common) with the precheck and with protovalidate: the precheck says
 * valid only for messages protovalidate finds valid, and for every such message of plain values.
 * Returns how many were valid and how many the precheck passed.
 */
function fuzz(desc: DescMessage, pools: Pools, runs: number, seed: number, pValid = 0.7): { valid: number; fast: number } {
  const precheck = compilePrecheck(desc);
  assert.ok(precheck, `${desc.typeName} compiles`);
  const rnd = seededRandom(seed);
  let valid = 0;
  let fast = 0;
  for (let i = 0; i < runs; i++) {
    const init: Record<string, unknown> = {};
    for (const [k, values] of Object.entries(pools)) {
      const v = rnd() < pValid ? values[0] : pick(values, rnd);
      if (v !== undefined) init[k] = v;
    }
    const message = create(desc, init as never);
    const verdict = validator.validate(desc, message).kind;
    const quick: boolean = precheck(message);
    if (quick) assert.equal(verdict, "valid", `precheck passed an invalid ${desc.name}: ${show(init)}`);
    if (verdict === "valid" && isPlainValue(init)) assert.equal(quick, true, `precheck failed a valid ${desc.name}: ${show(init)}`);
    if (verdict === "valid") valid++;
    if (quick) fast++;
  }
  return { valid, fast };
}

const VALID_PLACE = { countryCode: "DE", postalCode: "10115", city: "Berlin", location: { latitude: 52.52, longitude: 13.405 }, hubCode: "" };
/** Places valid and invalid in each of their fields. */
const PLACES = [
  VALID_PLACE,
  undefined,
  { ...VALID_PLACE, hubCode: "FRA" },
  { ...VALID_PLACE, hubCode: "fra" },
  { ...VALID_PLACE, hubCode: "FRANKFURT" },
  { ...VALID_PLACE, countryCode: "de" },
  { ...VALID_PLACE, countryCode: "" },
  { ...VALID_PLACE, postalCode: "1".repeat(16) },
  { ...VALID_PLACE, postalCode: "1".repeat(17) },
  { ...VALID_PLACE, postalCode: "SW1A\u00001AA" },
  { ...VALID_PLACE, city: "" },
  { ...VALID_PLACE, city: "c".repeat(128) },
  { ...VALID_PLACE, city: "c".repeat(129) },
  { ...VALID_PLACE, city: "S\u00e3o Paulo \u{1F4E6}" },
  { ...VALID_PLACE, city: "lone \uDC00" },
  { ...VALID_PLACE, location: undefined },
  { ...VALID_PLACE, location: { latitude: 90, longitude: -180 } },
  { ...VALID_PLACE, location: { latitude: 90.5, longitude: 0 } },
  { ...VALID_PLACE, location: { latitude: 0, longitude: Number.NaN } },
  { ...VALID_PLACE, location: { latitude: Number.NEGATIVE_INFINITY, longitude: 0 } },
];

const TIMES = [
  { seconds: 1_800_000_000n, nanos: 0 },
  undefined,
  { seconds: 946_684_800n, nanos: 0 },
  { seconds: 946_684_799n, nanos: 999_999_999 },
  { seconds: 4_102_444_800n, nanos: 0 },
  { seconds: 1_800_000_000n, nanos: -1 },
  { seconds: 1_800_000_000n, nanos: 1_000_000_000 },
];

const TRACKING_NUMBERS = ["ABCD1234", "A".repeat(30), "A".repeat(31), "ABCD123", "abcd1234", "ABCD 1234", ""];
const CARRIERS = ["acme", "dhl-express", "a".repeat(32), "a".repeat(33), "a", "Acme", "1acme", ""];
const FREE_TEXT_512 = ["", "t".repeat(512), "t".repeat(513), "nul\0", "\uD800", "ok \u{1F4E6}"];
const SCAN = { eventId: "e-1", trackingNumber: "ABCD1234", carrierCode: "acme", rawStatus: { code: "AR" }, eventTime: { seconds: 1_800_000_000n, nanos: 0 } };

describe("compilePrecheck", () => {
  const precheck = compilePrecheck(ScanSchema);

  it("compiles the Scan rules", () => {
    assert.ok(precheck, "every rule of scan.proto is within the compiled subset");
  });

  it("says valid only for scans protovalidate finds valid, and for every such scan without surrogates", () => {
    const { valid, fast } = fuzz(ScanSchema, POOL, 4000, 13);
    assert.ok(valid > 400 && valid < 3900, `${valid} valid scans of 4000: both kinds are exercised`);
    assert.ok(fast > 400);
  });

  it("compiles the hot requests of ingest and tracking", () => {
    for (const desc of [
      CreateShipmentRequestSchema,
      HandOverShipmentRequestSchema,
      StreamScansRequestSchema,
      SubmitScansRequestSchema,
      GetShipmentRequestSchema,
      ListShipmentEventsRequestSchema,
      WatchShipmentRequestSchema,
    ]) {
      assert.equal(typeof compilePrecheck(desc), "function", desc.typeName);
    }
  });

  it("declines SearchShipmentsRequest for its message CEL rule alone", () => {
    assert.equal(compilePrecheck(SearchShipmentsRequestSchema), undefined);
    const fields = clone(DescriptorProtoSchema, SearchShipmentsRequestSchema.proto);
    assert.ok(fields.options && hasExtension(fields.options, messageRulesExt));
    clearExtension(fields.options, messageRulesExt);
    const file = clone(FileDescriptorProtoSchema, file_logistics_tracking_v1_tracking.proto);
    file.messageType = file.messageType.map((m) => (m.name === fields.name ? fields : m));
    const registry = createFileRegistry(file, (name) => meshFiles.get(name));
    const withoutCel = registry.getMessage(SearchShipmentsRequestSchema.typeName);
    assert.ok(withoutCel);
    assert.equal(typeof compilePrecheck(withoutCel), "function", "every field rule of SearchShipmentsRequest is in the subset");
  });

  it("compiles or declines every message of the mesh, never failing", () => {
    const all = [...meshFiles.values()].filter((f) => f.name.startsWith("logistics/")).flatMap((f) => allMessages(f.messages));
    assert.ok(all.length > 50);
    const compiled = all.filter((m) => compilePrecheck(m) !== undefined);
    assert.ok(compiled.length > all.length / 2, `${compiled.length} of ${all.length} compile`);
  });

  it("agrees with protovalidate on CreateShipmentRequest (places, parcel, service level, partners, ready time)", () => {
    const partners = (n: number) => Array.from({ length: n }, (_, i) => `partner-${i}`);
    const { valid, fast } = fuzz(
      CreateShipmentRequestSchema,
      {
        idempotencyKey: ["order-12345678", "k".repeat(8), "k".repeat(7), "k".repeat(128), "k".repeat(129), "key with \0 nul", "key \u{1F4E6}\u{1F4E6}\u{1F4E6}", "\uD800 key 1234", ""],
        trackingNumber: ["", ...TRACKING_NUMBERS],
        carrierCode: CARRIERS,
        customerId: ["cust-1", "c.u_s:t-1", "x".repeat(64), "x".repeat(65), "with space", ""],
        customerReference: ["", "ref-1", "r".repeat(128), "r".repeat(129), "nul\0"],
        origin: PLACES,
        destination: PLACES,
        serviceLevel: [ServiceLevel.STANDARD, ServiceLevel.UNSPECIFIED, ServiceLevel.ECONOMY, ServiceLevel.OVERNIGHT, 5, 99, -1],
        parcel: [
          { weightGrams: 1200, lengthMm: 300, widthMm: 200, heightMm: 100 },
          undefined,
          { weightGrams: 0 },
          { weightGrams: 1 },
          { weightGrams: 1_000_000, lengthMm: 5000, widthMm: 5000, heightMm: 5000 },
          { weightGrams: 1_000_001 },
          { weightGrams: 5, lengthMm: 5001 },
          { weightGrams: 5, widthMm: 0xffff_ffff },
        ],
        readyTime: TIMES,
        partnerCarrierCodes: [[], ["ups"], ["ups", "dhl"], ["ups", "ups"], ["UPS"], [""], partners(8), partners(9)],
      },
      4000,
      17,
      0.88,
    );
    assert.ok(valid > 400 && valid < 3600, `${valid} valid requests of 4000: both kinds are exercised`);
    assert.ok(fast > 400);
  });

  it("agrees with protovalidate on the other hot requests of ingest and tracking", () => {
    const cases: Array<[DescMessage, Pools]> = [
      [HandOverShipmentRequestSchema, { trackingNumber: TRACKING_NUMBERS, partnerCarrierCode: CARRIERS, hubCode: ["", "FRA", "DEHAM1", "fr", "FRANKFURT"] }],
      [GetShipmentRequestSchema, { trackingNumber: TRACKING_NUMBERS }],
      [ListShipmentEventsRequestSchema, { trackingNumber: TRACKING_NUMBERS, pageSize: [50, 0, 500, 501, 0xffff_ffff], pageToken: ["", "p".repeat(512), "p".repeat(513), "nul\0"] }],
      [WatchShipmentRequestSchema, { trackingNumber: TRACKING_NUMBERS, afterSequence: [0n, 1n, 2n ** 64n - 1n] }],
      [StreamScansRequestSchema, { scans: [[SCAN], [], Array(500).fill(SCAN), Array(501).fill(SCAN), [{ ...SCAN, eventId: "" }], [{}]], traceparent: ["", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "x".repeat(128), "x".repeat(129), "nul\0"], tracestate: FREE_TEXT_512 }],
      [SubmitScansRequestSchema, { scans: [[SCAN], [], Array(1000).fill(SCAN), Array(1001).fill(SCAN), [{}]] }],
    ];
    for (const [i, [desc, pools]] of cases.entries()) {
      const { valid, fast } = fuzz(desc, pools, 600, 100 + i);
      assert.ok(valid > 60 && valid < 590 && fast > 60, `${desc.name}: ${valid} valid, ${fast} passed the precheck of 600`);
    }
  });
});
