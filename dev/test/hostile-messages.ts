import { create, ScalarType, type DescField, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import fc from "fast-check";
import { AWKWARD_TEXT } from "./extreme-values.js";

/**
 * fast-check arbitraries of hostile request messages, derived from the protobuf descriptors
 * alone (no knowledge of the rules): extreme and special numbers, odd Unicode (NUL, lone
 * surrogates, controls, astral characters, huge strings), out-of-range enum numbers, timestamps
 * anywhere in int64 with any nanos, random bytes, and sometimes huge repeated fields and maps.
 * What the edge must do with them is the test's business: answer precisely, never crash.
 */

/** How hostile and how big generated messages get. */
export interface HostileOptions {
  /** Nesting of message fields followed (deeper ones stay unset). Default 4. */
  readonly maxDepth?: number;
  /** Elements of a "huge" repeated field or map. Default 2000. */
  readonly hugeItems?: number;
}

const INT32 = [-2_147_483_648, -1, 0, 1, 2_147_483_647];
const UINT32 = [0, 1, 4_294_967_295];
const INT64 = [-9_223_372_036_854_775_808n, -1n, 0n, 1n, 9_223_372_036_854_775_807n];
const UINT64 = [0n, 1n, 18_446_744_073_709_551_615n];

/** Strings as an attacker sends them: awkward, invalid UTF-16, NUL, controls, very long. */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  fc.string(),
  fc.string({ unit: "grapheme", maxLength: 64 }),
  fc.string({ unit: "binary", maxLength: 64 }),
  fc.constantFrom("", "\u0000", "a\u0000b", "\ud800", "\udfff", "x\ud83d", ...AWKWARD_TEXT),
  fc.array(fc.constantFrom(...AWKWARD_TEXT, "\u0000", "\ud800", "A"), { maxLength: 64 }).map((a) => a.join("")),
  fc.integer({ min: 1, max: 20_000 }).map((n) => "Z".repeat(n)),
);

function scalar(t: ScalarType): fc.Arbitrary<unknown> {
  switch (t) {
    case ScalarType.STRING:
      return hostileString;
    case ScalarType.BYTES:
      return fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 0, max: 100_000 }).map((n) => new Uint8Array(n)));
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return fc.oneof(fc.double(), fc.constantFrom(Number.NaN, Infinity, -Infinity, -0, 1e15, -1e15, Number.MAX_VALUE, Number.MIN_VALUE));
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return fc.oneof(fc.integer({ min: -2_147_483_648, max: 2_147_483_647 }), fc.constantFrom(...INT32));
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return fc.oneof(fc.integer({ min: 0, max: 4_294_967_295 }), fc.constantFrom(...UINT32));
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return fc.oneof(fc.bigInt({ min: INT64[0]!, max: INT64[4]! }), fc.constantFrom(...INT64));
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return fc.oneof(fc.bigInt({ min: 0n, max: UINT64[2]! }), fc.constantFrom(...UINT64));
  }
}

/** Any int64 seconds, any int32 nanos, and the ends of every range that matters. */
const timestamp = fc.record({
  seconds: fc.oneof(
    fc.bigInt({ min: INT64[0]!, max: INT64[4]! }),
    fc.constantFrom(-62_135_596_800n, 0n, 946_684_800n, 4_102_444_800n, 253_402_300_800n, 10n ** 15n),
    fc.bigInt({ min: 946_684_800n, max: 4_102_444_799n }),
  ),
  nanos: fc.oneof(fc.integer({ min: -2_147_483_648, max: 2_147_483_647 }), fc.constantFrom(-1, 0, 999_999_999, 1_000_000_000)),
});

const memo = new Map<string, fc.Arbitrary<Record<string, unknown>>>();

/** Init objects of `desc` (see the module comment); `create(desc, init)` makes the message. */
export function hostileInit(desc: DescMessage, o: HostileOptions = {}, depth = 0): fc.Arbitrary<Record<string, unknown>> {
  const maxDepth = o.maxDepth ?? 4;
  const key = `${desc.typeName}@${depth}`;
  const known = memo.get(key);
  if (known) return known;
  if (desc.typeName === "google.protobuf.Timestamp") return timestamp as fc.Arbitrary<Record<string, unknown>>;
  const hugeItems = o.hugeItems ?? 2000;
  const parts: Record<string, fc.Arbitrary<unknown>> = {};
  const oneofs = new Map<string, Array<[DescField, fc.Arbitrary<unknown>]>>();
  for (const f of desc.fields) {
    const value = fieldValue(f, o, depth, maxDepth, hugeItems);
    if (!value) continue;
    if (f.oneof) {
      const cases = oneofs.get(f.oneof.localName) ?? [];
      cases.push([f, value]);
      oneofs.set(f.oneof.localName, cases);
    } else {
      parts[f.localName] = value;
    }
  }
  for (const [name, cases] of oneofs) {
    parts[name] = fc.oneof(...cases.map(([f, v]) => v.map((value) => ({ case: f.localName, value }))));
  }
  const arb = fc.record(parts, { requiredKeys: [] }) as fc.Arbitrary<Record<string, unknown>>;
  memo.set(key, arb);
  return arb;
}

function fieldValue(f: DescField, o: HostileOptions, depth: number, maxDepth: number, hugeItems: number): fc.Arbitrary<unknown> | undefined {
  const many = <T>(item: fc.Arbitrary<T>) =>
    fc.oneof(
      { weight: 5, arbitrary: fc.array(item, { maxLength: 8 }) },
      { weight: 1, arbitrary: item.chain((one) => fc.constant(Array.from({ length: hugeItems }, () => one))) },
    );
  const messageOf = (m: DescMessage) => (depth >= maxDepth && m.typeName !== "google.protobuf.Timestamp" ? undefined : hostileInit(m, o, depth + 1));
  switch (f.fieldKind) {
    case "scalar":
      return scalar(f.scalar);
    case "enum":
      return fc.oneof(fc.constantFrom(...f.enum.values.map((v) => v.number)), fc.integer({ min: -2_147_483_648, max: 2_147_483_647 }));
    case "message":
      return messageOf(f.message);
    case "list": {
      if (f.listKind === "scalar") return many(scalar(f.scalar));
      if (f.listKind === "enum") return many(fc.oneof(fc.constantFrom(...f.enum.values.map((v) => v.number)), fc.integer({ min: -5, max: 1000 })));
      const m = messageOf(f.message);
      return m && many(m);
    }
    case "map": {
      const value = f.mapKind === "scalar" ? scalar(f.scalar) : f.mapKind === "enum" ? fc.integer() : messageOf(f.message);
      if (!value) return undefined;
      return fc.oneof(
        { weight: 5, arbitrary: fc.dictionary(hostileString, value, { maxKeys: 8 }) },
        { weight: 1, arbitrary: value.map((v) => Object.fromEntries(Array.from({ length: hugeItems }, (_, i) => [`k${i}`, v]))) },
      );
    }
  }
}

/** Hostile `desc` messages. */
export function hostileMessage<Desc extends DescMessage>(desc: Desc, o: HostileOptions = {}): fc.Arbitrary<MessageShape<Desc>> {
  return hostileInit(desc, o).map((init) => create(desc, init as never));
}
