import * as assert from "node:assert/strict";
import { describe, it } from "vitest";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import { seededRandom } from "@logistics/shared/testing";
import { PlaceSchema } from "@logistics/shared/gen/logistics/common/v1/geo_pb.js";
import { EtaSchema, RouteSchema } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { CarrierStatusSchema } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { actualsJson, carrierStatusJson, etaJson, iso, isoOf, placeJson, planJson } from "../../test/store/doc-generators.js";
import {
  carrierStatusFromDoc,
  etaFromDoc,
  FAST_PATHS,
  fieldsAsKnown,
  KNOWN_FIELDS,
  placeFromDoc,
  routeFromDoc,
  timeFromDoc,
  type LegActuals,
} from "./doc-json.js";

/** What a call gives: its value, or the message it throws. */
function outcome(f: () => unknown): { value: unknown } | { error: string } {
  try {
    return { value: f() };
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

/** The Route the rendering built before: the document's plan as proto JSON, read by `fromJson`. */
function referenceRoute(plan: object, trackingNumber: string, eta: object | undefined, legs: readonly object[], actuals: readonly LegActuals[]) {
  return fromJson(RouteSchema, {
    ...plan,
    trackingNumber,
    ...(eta ? { eta } : {}),
    legs: legs.map((leg, i) => {
      const { departure, arrival } = actuals[i] ?? {};
      return { ...leg, ...(departure ? { actualDeparture: departure } : {}), ...(arrival ? { actualArrival: arrival } : {}) };
    }),
  } as JsonValue);
}

const N = 4000;

describe("document readers (doc-json.ts)", () => {
  it("know the contracts' messages as they are (update the hand-written code when this fails)", () => {
    for (const schema of KNOWN_FIELDS.keys()) assert.ok(fieldsAsKnown(schema), `${schema.typeName} changed`);
  });

  it("read every time exactly as fromJson does, and the store's own forms without it", () => {
    const random = seededRandom(11);
    let fast = 0;
    for (let i = 0; i < 20 * N; i++) {
      const s = iso(random);
      assert.deepStrictEqual(
        outcome(() => timeFromDoc(s)),
        outcome(() => fromJson(TimestampSchema, s)),
        s,
      );
      if (FAST_PATHS.time(s)) fast++;
    }
    assert.ok(fast > 12 * N, `fast path taken ${fast} times`);
    for (const ms of [0, 1, 951782400000 /* 2000-02-29 */, 4107542399999, 253402300799999, -62135596800000]) {
      for (const nanos of [0, 1, 999_999]) {
        const s = isoOf(ms, nanos);
        assert.ok(FAST_PATHS.time(s), s);
        assert.deepStrictEqual(timeFromDoc(s), fromJson(TimestampSchema, s), s);
      }
    }
    for (const s of ["2026-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T00:00:60Z", "0000-01-01T00:00:00Z"]) {
      assert.equal(FAST_PATHS.time(s), undefined, s);
    }
  });

  it("read places, carrier statuses and ETAs exactly as fromJson does", () => {
    const random = seededRandom(12);
    const cases = [
      ["place", placeJson, placeFromDoc, PlaceSchema, FAST_PATHS.place],
      ["carrier status", carrierStatusJson, carrierStatusFromDoc, CarrierStatusSchema, FAST_PATHS.carrierStatus],
      ["eta", etaJson, etaFromDoc, EtaSchema, FAST_PATHS.eta],
    ] as const;
    for (const [what, gen, read, schema, fastPath] of cases) {
      let fast = 0;
      for (let i = 0; i < N; i++) {
        const json = gen(random, random() < 0.5 ? 0 : 0.2) as JsonValue;
        assert.deepStrictEqual(
          outcome(() => read(json as object)),
          outcome(() => fromJson(schema, json)),
          `${what} ${JSON.stringify(json)}`,
        );
        if (fastPath(json)) fast++;
      }
      assert.ok(fast > N / 2, `${what}: fast path taken ${fast} times`);
    }
  });

  it("read a document's route plan with its ETA and the scans' leg times exactly as fromJson reads the merged JSON", () => {
    const random = seededRandom(13);
    let fast = 0;
    for (let i = 0; i < N; i++) {
      const odd = random() < 0.5 ? 0 : 0.05;
      const plan = planJson(random, odd);
      const legs = (plan.legs ?? []) as object[];
      const eta = random() < 0.8 ? (etaJson(random, odd) as object) : undefined;
      const actuals = actualsJson(random, random() < 0.9 ? legs.length : 1, odd);
      const tn = random() < 0.98 ? "TN12345678" : "TN\udc00";
      assert.deepStrictEqual(
        outcome(() => routeFromDoc(plan, tn, eta, legs, actuals)),
        outcome(() => referenceRoute(plan, tn, eta, legs, actuals)),
        JSON.stringify({ plan, eta, actuals }),
      );
      if (FAST_PATHS.route(plan, tn, eta, legs, actuals)) fast++;
    }
    assert.ok(fast > N / 3, `fast path taken ${fast} times`);
  });
});
