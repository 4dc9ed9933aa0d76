import {
  create,
  getOption,
  hasExtension,
  getExtension,
  ScalarType,
  type DescField,
  type DescMessage,
  type MessageShape,
} from "@bufbuild/protobuf";
import {
  field as fieldRulesExt,
  type FieldRules,
  type StringRules,
  type TimestampRules,
} from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { mesh_time } from "@logistics/shared/gen/logistics/common/v1/validation_pb.js";
import { FREE_TEXT_PATTERN, isFreeText } from "@logistics/shared/validation";

/**
 * Extreme-but-valid messages derived from the contracts themselves: every field is filled from
 * its protovalidate rules (longest or shortest string the rule allows, made of the most awkward
 * characters the rule admits; the ends of numeric ranges; the ends of the mesh's time range; the
 * most map pairs and list items allowed). Tests push them through the real edge and check that
 * every store and consumer downstream holds what the edge accepted.
 */

/** Which end of every rule to pick. */
export type Extreme = "min" | "max";

/**
 * Characters the free-text rule admits that trip naive code: astral (4 UTF-8 bytes, 2 UTF-16
 * units), combining marks, right-to-left override, C0 controls other than NUL, noncharacters, JSON
 * and SQL metacharacters, a byte-order mark and line breaks.
 */
export const AWKWARD_TEXT = ["😀", "e\u0301", "\u202e", "\u0001", "\u001f", "\uffff", "\ufffe", '"', "\\", "'", "%", "<", "\ufeff", "\r\n", "\u2028", "𝕏"];

/** What a message's fields become; `overrides` win (by field name, at any depth: `origin.hub_code`). */
export interface ExtremeOptions {
  readonly extreme: Extreme;
  /** Field path (proto names, dotted) → value to use instead of the derived one; `undefined` leaves the field unset. */
  readonly overrides?: Readonly<Record<string, unknown>>;
  /** Repeated fields and maps get at most this many elements. Default: the rule's maximum, capped at 16. */
  readonly maxItems?: number;
  /** Shifts which awkward characters are used, so runs differ. Default 0. */
  readonly variant?: number;
}

/** An extreme-but-valid `schema` message (see the module comment). */
export function extremeMessage<Desc extends DescMessage>(schema: Desc, o: ExtremeOptions): MessageShape<Desc> {
  return create(schema, extremeInit(schema, o, "") as never);
}

function extremeInit(desc: DescMessage, o: ExtremeOptions, prefix: string): Record<string, unknown> {
  const init: Record<string, unknown> = {};
  const oneofsDone = new Set<string>();
  for (const f of desc.fields) {
    const path = prefix ? `${prefix}.${f.name}` : f.name;
    if (o.overrides && path in o.overrides) {
      const v = o.overrides[path];
      if (v === undefined) continue;
      if (f.oneof) init[f.oneof.localName] = { case: f.localName, value: v };
      else init[f.localName] = v;
      continue;
    }
    if (f.oneof) {
      // The first member of a oneof is set (overrides may pick another one).
      if (oneofsDone.has(f.oneof.name)) continue;
      if (f.oneof.fields.some((m) => o.overrides && `${prefix ? `${prefix}.` : ""}${m.name}` in o.overrides)) continue;
      oneofsDone.add(f.oneof.name);
    }
    const value = fieldValue(f, rulesOf(f), o, path);
    if (value === undefined) continue;
    if (f.oneof) init[f.oneof.localName] = { case: f.localName, value };
    else init[f.localName] = value;
  }
  return init;
}

function rulesOf(f: DescField): FieldRules | undefined {
  const r = getOption(f, fieldRulesExt);
  return r.type.case === undefined && !r.required && r.cel.length === 0 ? undefined : r;
}

function fieldValue(f: DescField, rules: FieldRules | undefined, o: ExtremeOptions, path: string): unknown {
  switch (f.fieldKind) {
    case "scalar":
      return scalarValue(f.scalar, rules, o, path);
    case "enum":
      return enumValue(f.enum.values.map((v) => v.number), rules, o);
    case "message":
      return messageValue(f.message, rules, o, path);
    case "list": {
      const items = listLength(rules, o);
      const itemRules = rules?.type.case === "repeated" ? rules.type.value.items : undefined;
      return Array.from({ length: items }, (_, i) => {
        const item = { ...o, variant: (o.variant ?? 0) + i };
        if (f.listKind === "scalar") return scalarValue(f.scalar, itemRules, item, path);
        if (f.listKind === "enum") return enumValue(f.enum.values.map((v) => v.number), itemRules, item, i);
        return messageValue(f.message, itemRules, item, path);
      });
    }
    case "map": {
      const pairs = mapPairs(rules, o);
      const keyRules = rules?.type.case === "map" ? rules.type.value.keys : undefined;
      const valueRules = rules?.type.case === "map" ? rules.type.value.values : undefined;
      const out: Record<string, unknown> = {};
      for (let i = 0; i < pairs; i++) {
        const item = { ...o, variant: (o.variant ?? 0) + i };
        // Keys must differ: the pair index goes first, then the derived filler.
        const key = uniqueKey(String(scalarValue(ScalarType.STRING, keyRules, item, path)), i, keyRules);
        out[key] = f.mapKind === "scalar" ? scalarValue(f.scalar, valueRules, item, path) : undefined;
      }
      return out;
    }
  }
}

function listLength(rules: FieldRules | undefined, o: ExtremeOptions): number {
  const r = rules?.type.case === "repeated" ? rules.type.value : undefined;
  const min = Number(r?.minItems ?? 0n);
  const max = Math.min(r?.maxItems ? Number(r.maxItems) : 4, o.maxItems ?? 16);
  return o.extreme === "max" ? Math.max(min, max) : min;
}

function mapPairs(rules: FieldRules | undefined, o: ExtremeOptions): number {
  const r = rules?.type.case === "map" ? rules.type.value : undefined;
  const min = Number(r?.minPairs ?? 0n);
  const max = Math.min(r?.maxPairs ? Number(r.maxPairs) : 4, o.maxItems ?? 16);
  return o.extreme === "max" ? Math.max(min, max) : min;
}

function uniqueKey(base: string, i: number, rules: FieldRules | undefined): string {
  const s = rules?.type.case === "string" ? rules.type.value : undefined;
  const max = s?.maxLen ? Number(s.maxLen) : 64;
  const chars = [...`${i}${base}`];
  return chars.slice(0, max).join("");
}

function enumValue(numbers: number[], rules: FieldRules | undefined, o: ExtremeOptions, index = 0): number {
  const r = rules?.type.case === "enum" ? rules.type.value : undefined;
  let allowed = numbers;
  if (r?.in.length) allowed = allowed.filter((n) => r.in.includes(n));
  if (r?.notIn.length) allowed = allowed.filter((n) => !r.notIn.includes(n));
  if (rules?.required || r?.notIn.includes(0)) allowed = allowed.filter((n) => n !== 0);
  if (allowed.length === 0) return 0;
  const pick = o.extreme === "max" ? allowed.length - 1 - index : index;
  return allowed[((pick % allowed.length) + allowed.length) % allowed.length]!;
}

function messageValue(desc: DescMessage, rules: FieldRules | undefined, o: ExtremeOptions, path: string): unknown {
  if (desc.typeName === "google.protobuf.Timestamp") {
    const t = rules?.type.case === "timestamp" ? rules.type.value : undefined;
    if (!t && !rules?.required) return undefined;
    return timestampValue(t, o);
  }
  if (desc.typeName.startsWith("google.protobuf.")) return undefined;
  // Optional sub-messages are filled too (the most the edge can be sent), except in "min" mode.
  if (o.extreme === "min" && !rules?.required) return undefined;
  return extremeInit(desc, o, path);
}

/** The first and last instants the mesh carries (logistics.common.v1.mesh_time). */
export const MESH_TIME_MIN = { seconds: 946_684_800n, nanos: 0 };
export const MESH_TIME_MAX = { seconds: 4_102_444_799n, nanos: 999_999_999 };

/** The ends of the mesh's range (every request timestamp carries logistics.common.v1.mesh_time). */
function timestampValue(t: TimestampRules | undefined, o: ExtremeOptions): { seconds: bigint; nanos: number } {
  if (t && !(hasExtension(t, mesh_time) && getExtension(t, mesh_time))) throw new Error("a request timestamp without mesh_time");
  return o.extreme === "max" ? MESH_TIME_MAX : MESH_TIME_MIN;
}

function scalarValue(scalar: ScalarType, rules: FieldRules | undefined, o: ExtremeOptions, path: string): unknown {
  const c = rules?.type;
  switch (scalar) {
    case ScalarType.STRING:
      return stringValue(c?.case === "string" ? c.value : undefined, o, path);
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT: {
      const r = c?.case === "double" || c?.case === "float" ? c.value : undefined;
      if (o.extreme === "max") {
        if (r?.lessThan.case === "lte") return r.lessThan.value;
        if (r?.lessThan.case === "lt") return r.lessThan.value - 1e-9;
        return r?.finite ? Number.MAX_VALUE : 1e308;
      }
      if (r?.greaterThan.case === "gte") return r.greaterThan.value;
      if (r?.greaterThan.case === "gt") return r.greaterThan.value + 1e-9;
      return r?.finite ? -Number.MAX_VALUE : -1e308;
    }
    case ScalarType.UINT32:
    case ScalarType.INT32: {
      const r = c?.case === "uint32" || c?.case === "int32" ? c.value : undefined;
      const hi = scalar === ScalarType.UINT32 ? 4_294_967_295 : 2_147_483_647;
      const lo = scalar === ScalarType.UINT32 ? 0 : -2_147_483_648;
      if (o.extreme === "max") {
        if (r?.lessThan.case === "lte") return r.lessThan.value;
        if (r?.lessThan.case === "lt") return r.lessThan.value - 1;
        return hi;
      }
      if (r?.greaterThan.case === "gte") return r.greaterThan.value;
      if (r?.greaterThan.case === "gt") return r.greaterThan.value + 1;
      return lo;
    }
    case ScalarType.UINT64:
    case ScalarType.INT64:
      return o.extreme === "max" ? (scalar === ScalarType.UINT64 ? 18_446_744_073_709_551_615n : 9_223_372_036_854_775_807n) : 0n;
    case ScalarType.BOOL:
      return o.extreme === "max";
    case ScalarType.BYTES:
      return o.extreme === "max" ? new Uint8Array(64).fill(0xff) : new Uint8Array();
    default:
      return undefined;
  }
}

function stringValue(r: StringRules | undefined, o: ExtremeOptions, path: string): string {
  const min = Number(r?.minLen ?? 0n);
  const max = r?.maxLen ? Number(r.maxLen) : 256;
  if (r?.wellKnown.case === "uri" && r.wellKnown.value) {
    const base = "https://hooks.example.com/";
    return o.extreme === "max" ? base + "p%C3%A9/".repeat(Math.floor((max - base.length) / 8)) : base;
  }
  if (r?.pattern && r.pattern !== FREE_TEXT_PATTERN) return fromPattern(r.pattern, o, path);
  const free = !r || isFreeText(r);
  if (!free) throw new Error(`${path}: no way to derive a value for string rules ${JSON.stringify(r)}`);
  const length = o.extreme === "max" ? max : Math.max(min, 0);
  const shift = o.variant ?? 0;
  // Characters, not UTF-16 units: protovalidate's lengths count code points.
  return Array.from({ length }, (_, i) => AWKWARD_TEXT[(i + shift) % AWKWARD_TEXT.length]!)
    .flatMap((s) => [...s])
    .slice(0, length)
    .join("");
}

/**
 * A value for the patterns the contracts use: anchored sequences of character classes with
 * `{m,n}` quantifiers (e.g. `^[a-z][a-z0-9-]{1,31}$`): the longest or shortest match, using every
 * character of each class in turn (so separators such as `.`, `:` and `-` appear).
 */
export function fromPattern(pattern: string, o: Pick<ExtremeOptions, "extreme" | "variant">, path = "field"): string {
  const m = /^\^((?:\[[^\]]+\](?:\{\d+(?:,\d+)?\})?)+)\$$/.exec(pattern);
  if (!m) throw new Error(`${path}: cannot derive a value for pattern ${pattern}; teach extreme-values.ts`);
  let out = "";
  const parts = m[1]!.matchAll(/\[([^\]]+)\](?:\{(\d+)(?:,(\d+))?\})?/g);
  for (const [, cls, lo, hi] of parts) {
    const chars = expandClass(cls!);
    const min = lo === undefined ? 1 : Number(lo);
    const max = hi === undefined ? min : Number(hi);
    const n = o.extreme === "max" ? max : min;
    for (let i = 0; i < n; i++) out += chars[(o.extreme === "max" ? chars.length - 1 - ((i + (o.variant ?? 0)) % chars.length) : i % chars.length)]!;
  }
  return out;
}

function expandClass(cls: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < cls.length; i++) {
    if (cls[i + 1] === "-" && i + 2 < cls.length) {
      for (let c = cls.charCodeAt(i); c <= cls.charCodeAt(i + 2); c++) out.push(String.fromCharCode(c));
      i += 2;
    } else out.push(cls[i]!);
  }
  return out;
}
