import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { ScanSchema, type Scan } from "../gen/logistics/common/v1/scan_pb.js";
import { CreateShipmentRequestSchema } from "../gen/logistics/ingest/v1/ingest_pb.js";
import { seededRandom } from "../testing/seeded-random.js";
import { createMeshValidator } from "./mesh-validator.js";
import { compilePrecheck } from "./precheck.js";

const validator = createMeshValidator();

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

function pick<T>(xs: readonly T[], rnd: () => number): T {
  return xs[Math.floor(rnd() * xs.length)] as T;
}

function hasSurrogate(scan: Scan): boolean {
  return /[\uD800-\uDFFF]/.test(JSON.stringify([scan.rawStatus?.code, scan.rawStatus?.text, scan.note, scan.attributes]));
}

describe("compilePrecheck", () => {
  const precheck = compilePrecheck(ScanSchema);

  it("compiles the Scan rules", () => {
    assert.ok(precheck, "every rule of scan.proto is within the compiled subset");
  });

  it("says valid only for scans protovalidate finds valid, and for every such scan without surrogates", () => {
    assert.ok(precheck);
    const rnd = seededRandom(13);
    let valid = 0;
    let fast = 0;
    for (let i = 0; i < 4000; i++) {
      // Mostly valid fields, so valid scans and single violations are both common.
      const field = <K extends keyof typeof POOL>(k: K): (typeof POOL)[K][number] => {
        const values: ReadonlyArray<(typeof POOL)[K][number]> = POOL[k];
        return rnd() < 0.7 ? (values[0] as (typeof POOL)[K][number]) : pick(values, rnd);
      };
      const rawStatus = field("rawStatus");
      const eventTime = field("eventTime");
      const location = field("location");
      const scan = create(ScanSchema, {
        eventId: field("eventId"),
        trackingNumber: field("trackingNumber"),
        carrierCode: field("carrierCode"),
        ...(rawStatus ? { rawStatus } : {}),
        ...(eventTime ? { eventTime: eventTime as Timestamp } : {}),
        hubCode: field("hubCode"),
        ...(location ? { location } : {}),
        note: field("note"),
        attributes: field("attributes"),
      });
      const verdict = validator.validate(ScanSchema, scan).kind;
      const quick = precheck(scan);
      if (quick) assert.equal(verdict, "valid", `precheck passed an invalid scan: ${JSON.stringify(scan, (_, v) => (typeof v === "bigint" ? String(v) : v))}`);
      if (verdict === "valid" && !hasSurrogate(scan)) assert.equal(quick, true, "precheck failed a valid scan");
      if (verdict === "valid") valid++;
      if (quick) fast++;
    }
    assert.ok(valid > 400 && valid < 3900, `${valid} valid scans of 4000: both kinds are exercised`);
    assert.ok(fast > 400);
  });

  it("declines messages whose rules it does not know (CEL, message rules, other rule fields)", () => {
    // CreateShipmentRequest has rules outside the subset (e.g. int and enum rules, oneofs).
    assert.equal(compilePrecheck(CreateShipmentRequestSchema), undefined);
  });
});
