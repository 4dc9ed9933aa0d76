import * as assert from "node:assert/strict";
import { describe, it } from "vitest";
import { create, toJson } from "@bufbuild/protobuf";
import { seededRandom } from "@logistics/shared/testing";
import { ScanRecordedSchema, type ScanRecorded } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { pick, shipmentEvents, text, type Random } from "../../test/store/doc-generators.js";
import { HAND_WRITTEN_PATH, scanRecordedJson } from "./event-json.js";

/** What a call gives: its JSON text (key order included), or the message it throws. */
function outcome(f: () => unknown): { json: string } | { error: string } {
  try {
    return { json: JSON.stringify(f()) };
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

function generatedScans(random: Random, shipments: number): ScanRecorded[] {
  const out: ScanRecorded[] = [];
  for (let n = 0; n < shipments; n++) for (const e of shipmentEvents(random, n)) if (e.type === "scan.recorded") out.push(e.message);
  return out;
}

/** A copy of `m` with one value of another kind or range: what a producer or a hand-made message could hold. */
function oddScan(random: Random, m: ScanRecorded): ScanRecorded {
  const s = structuredClone(m) as ScanRecorded;
  const scan = s.scan ?? (s.scan = create(ScanRecordedSchema).scan);
  const r = random();
  const time = () => pick(random, [scan?.eventTime, s.recordedAt].filter((t) => t !== undefined));
  if (r < 0.3) {
    const t = time();
    if (t) {
      Object.assign(
        t,
        pick(random, [
          { seconds: -62135596800n },
          { seconds: -62135596801n },
          { seconds: 253402300799n, nanos: 999_999_999 },
          { seconds: 253402300800n },
          { seconds: -1n, nanos: 1 },
          { seconds: 0n, nanos: 0 },
          { seconds: 951782400n },
          { nanos: -1 },
          { nanos: 1_000_000_000 },
          { nanos: 1.5 },
          { nanos: 10 },
          { nanos: 120_000 },
          { seconds: 5 },
        ]),
      );
    }
  } else if (r < 0.4) s.recordedAt = undefined;
  else if (r < 0.5 && scan) scan.location = { $typeName: "logistics.common.v1.GeoPoint", latitude: pick(random, [0, -0, NaN, Infinity, 1e-300]), longitude: -0 };
  else if (r < 0.6 && scan) scan.attributes = pick(random, [{}, { a: "b" }, { "ü ": text(random), z: "" }, JSON.parse('{"__proto__":"x"}') as Record<string, string>, { n: 5 as unknown as string }]);
  else if (r < 0.7) s.status = pick(random, [0, 99, -2, 1.5, "x" as unknown as number]);
  else if (r < 0.8) s.kind = pick(random, [0, 12, 400]) as ScanRecorded["kind"];
  else if (r < 0.85 && scan) scan.rawStatus = pick(random, [undefined, { $typeName: "logistics.common.v1.CarrierStatus", code: "", text: "" }]);
  else if (r < 0.9 && scan) scan.note = pick(random, ["", text(random), 7 as unknown as string]);
  else if (r < 0.93) s.scan = undefined;
  else if (r < 0.96) s.region = text(random);
  else (s as { $typeName: string }).$typeName = "logistics.events.v1.Other";
  return s;
}

describe("scanRecordedJson", () => {
  it("writes every generated scan exactly as toJson (to the text), without falling back to it", () => {
    for (const m of generatedScans(seededRandom(51), 300)) {
      const json = HAND_WRITTEN_PATH(m);
      assert.ok(json, `fell back for ${m.eventId}`);
      assert.equal(JSON.stringify(json), JSON.stringify(toJson(ScanRecordedSchema, m)));
    }
  });

  it("writes (or refuses) scans holding odd values exactly as toJson", () => {
    const random = seededRandom(52);
    const scans = generatedScans(random, 60);
    for (let i = 0; i < 6000; i++) {
      const m = oddScan(random, pick(random, scans));
      assert.deepStrictEqual(
        outcome(() => scanRecordedJson(m)),
        outcome(() => toJson(ScanRecordedSchema, m)),
        `${m.eventId} ${String(m.scan?.eventTime?.seconds)}/${m.scan?.eventTime?.nanos}`,
      );
    }
  });

  it("writes every second of the years proto JSON allows as toJson does", () => {
    const random = seededRandom(53);
    const [m] = generatedScans(random, 1);
    for (let i = 0; i < 20000; i++) {
      const s = structuredClone(m) as ScanRecorded;
      const seconds = BigInt(Math.floor(-62135596800 + random() * (253402300799 + 62135596800 + 1)));
      if (s.scan?.eventTime) Object.assign(s.scan.eventTime, { seconds, nanos: pick(random, [0, 1, 1000, 1_000_000, 999_999_999]) });
      assert.equal(JSON.stringify(HAND_WRITTEN_PATH(s)), JSON.stringify(toJson(ScanRecordedSchema, s)), String(seconds));
    }
  });
});
