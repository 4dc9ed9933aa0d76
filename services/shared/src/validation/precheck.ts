import { getExtension, getOption, hasExtension, isFieldSet, type DescField, type DescMessage, type Message, type MessageShape } from "@bufbuild/protobuf";
import { reflect } from "@bufbuild/protobuf/reflect";
import {
  DoubleRulesSchema,
  FieldRulesSchema,
  field as fieldRulesOption,
  Ignore,
  MapRulesSchema,
  message as messageRulesOption,
  MessageRulesSchema,
  oneof as oneofRulesOption,
  OneofRulesSchema,
  StringRulesSchema,
  TimestampRulesSchema,
  type DoubleRules,
  type FieldRules,
  type StringRules,
  type TimestampRules,
} from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { mesh_time, text } from "../gen/logistics/common/v1/validation_pb.js";

/**
 * A fast test that a message passes its protovalidate rules: `true` means it certainly does;
 * `false` means "not known" (it may be invalid), and only then must the real validator run (it
 * names the violations). Never a substitute for the validator's verdict on a failing message.
 */
export type Precheck<Desc extends DescMessage> = (message: MessageShape<Desc>) => boolean;

type Check = (value: unknown) => boolean;

/** Unsupported: some rule of the message graph is outside what {@link compilePrecheck} knows. */
class Unsupported extends Error {}

/**
 * Compiles the protovalidate rules of `schema` (and every message it contains) into plain
 * JavaScript checks, once, so that a hot path (ingest judges every scan) pays a few comparisons
 * per field instead of an interpreted CEL and RE2 evaluation. Only a small, common subset is
 * compiled: string `pattern` (anchored patterns of literal characters and character classes with
 * quantifiers, which mean the same in RE2 and in a JavaScript `u` RegExp; classes may name code
 * points as `\xHH` or `\x{H...}`, as the free-text pattern does), `min_len`/`max_len`
 * (in code points), the mesh's `text` rule, `required` message fields, `ignore`, double
 * `gt`/`gte`/`lt`/`lte`, the mesh's `mesh_time` timestamp rule, map `min_pairs`/`max_pairs` with
 * string keys and values. Any other rule anywhere in the graph (message or oneof rules, CEL
 * expressions, other rule fields or predefined rules) makes this return undefined: the caller
 * then validates every message with protovalidate. Each compiled check is conservative (a string
 * with a surrogate or NUL, a NaN, a pattern outside the subset answer "not known").
 */
export function compilePrecheck<Desc extends DescMessage>(schema: Desc): Precheck<Desc> | undefined {
  try {
    const check = compileMessage(schema, new Map());
    return (message) => check(message);
  } catch (err) {
    if (err instanceof Unsupported) return undefined;
    throw err;
  }
}

function compileMessage(desc: DescMessage, compiling: Map<string, Check>): Check {
  const known = compiling.get(desc.typeName);
  if (known) return known;
  let checks: Array<(m: Record<string, unknown>) => boolean> = [];
  // Recursive messages refer to the entry while it is being built.
  const entry: Check = (m) => {
    const msg = m as Record<string, unknown>;
    for (const c of checks) if (!c(msg)) return false;
    return true;
  };
  compiling.set(desc.typeName, entry);
  if (desc.typeName.startsWith("google.protobuf.")) return entry; // well-known types carry no rules of their own
  onlySet(getOption(desc, messageRulesOption), new Set(), `${desc.typeName} message rules`);
  for (const o of desc.oneofs) onlySet(getOption(o, oneofRulesOption), new Set(), `${desc.typeName}.${o.name} oneof rules`);
  checks = desc.fields.map((f) => compileField(f, compiling));
  return entry;
}

function compileField(f: DescField, compiling: Map<string, Check>): (m: Record<string, unknown>) => boolean {
  const where = `${f.parent.typeName}.${f.name}`;
  const rules = getOption(f, fieldRulesOption);
  onlySet(rules, new Set(["required", "ignore", "string", "double", "timestamp", "map"]), where);
  if (rules.ignore === Ignore.ALWAYS) return () => true;
  if (rules.ignore !== Ignore.UNSPECIFIED && rules.ignore !== Ignore.IF_ZERO_VALUE) throw new Unsupported(where);
  const skipZero = rules.ignore === Ignore.IF_ZERO_VALUE;
  const name = f.localName;
  if (f.oneof) throw new Unsupported(`${where}: oneof member`);

  switch (f.fieldKind) {
    case "scalar": {
      if (f.proto.proto3Optional || rules.required) throw new Unsupported(`${where}: presence`);
      let check: Check | undefined;
      if (rules.type.case === "string") check = stringCheck(rules.type.value, where);
      else if (rules.type.case === "double") check = doubleCheck(rules.type.value, where);
      else if (rules.type.case !== undefined) throw new Unsupported(where);
      if (!check) return () => true;
      const c = check;
      return (m) => {
        const v = m[name];
        if (skipZero && (v === "" || v === 0)) return true;
        return c(v);
      };
    }
    case "enum":
      if (rules.type.case !== undefined || rules.required) throw new Unsupported(where);
      return () => true;
    case "message": {
      let inner: Check;
      if (f.message.typeName === "google.protobuf.Timestamp") {
        inner = rules.type.case === "timestamp" ? timestampCheck(rules.type.value, where) : () => true;
      } else {
        if (rules.type.case !== undefined) throw new Unsupported(where);
        inner = compileMessage(f.message, compiling);
      }
      const required = rules.required;
      return (m) => {
        const v = m[name];
        if (v === undefined) return !required;
        return inner(v);
      };
    }
    case "map": {
      if (rules.required) throw new Unsupported(where);
      let min = 0;
      let max = Infinity;
      let key: Check = () => true;
      let value: Check = () => true;
      if (rules.type.case === "map") {
        const r = rules.type.value;
        onlySet(r, new Set(["min_pairs", "max_pairs", "keys", "values"]), where);
        if (isFieldSet(r, MapRulesSchema.field.minPairs)) min = Number(r.minPairs);
        if (isFieldSet(r, MapRulesSchema.field.maxPairs)) max = Number(r.maxPairs);
        key = mapPartCheck(r.keys, `${where} keys`);
        value = mapPartCheck(r.values, `${where} values`);
      } else if (rules.type.case !== undefined) throw new Unsupported(where);
      if (f.mapKind === "message") {
        const inner = compileMessage(f.message, compiling);
        const prev = value;
        value = (v) => prev(v) && inner(v);
      }
      return (m) => {
        const obj = m[name] as Record<string, unknown>;
        const keys = Object.keys(obj);
        if (keys.length < min || keys.length > max) return false;
        for (const k of keys) if (!key(k) || !value(obj[k])) return false;
        return true;
      };
    }
    case "list": {
      if (rules.type.case !== undefined || rules.required) throw new Unsupported(where);
      if (f.listKind !== "message") return () => true;
      const inner = compileMessage(f.message, compiling);
      return (m) => (m[name] as unknown[]).every(inner);
    }
  }
}

function mapPartCheck(rules: FieldRules | undefined, where: string): Check {
  if (!rules) return () => true;
  onlySet(rules, new Set(["string"]), where);
  return rules.type.case === "string" ? stringCheck(rules.type.value, where) : () => true;
}

/** Throws Unsupported unless every set field of `rules` is in `allowed` and it carries no other extensions than the mesh's. */
function onlySet(rules: Message, allowed: ReadonlySet<string>, where: string, extensions: ReadonlySet<number> = new Set()): void {
  const r = reflect(messageDescOf(rules), rules);
  for (const f of r.fields) if (r.isSet(f) && !allowed.has(f.name)) throw new Unsupported(`${where}: ${f.name}`);
  for (const u of (rules as { $unknown?: Array<{ no: number }> }).$unknown ?? []) {
    if (!extensions.has(u.no)) throw new Unsupported(`${where}: extension ${u.no}`);
  }
}

function messageDescOf(m: Message): DescMessage {
  const desc = RULE_SCHEMAS.get(m.$typeName);
  if (!desc) throw new Unsupported(m.$typeName);
  return desc;
}

const RULE_SCHEMAS = new Map<string, DescMessage>(
  [DoubleRulesSchema, FieldRulesSchema, MapRulesSchema, MessageRulesSchema, OneofRulesSchema, StringRulesSchema, TimestampRulesSchema].map(
    (s) => [s.typeName, s],
  ),
);

/** Characters a compiled pattern may contain literally, in and out of classes. */
const LITERAL = String.raw`[A-Za-z0-9_:\-]`;
const CLASS_ITEM = String.raw`(?:[A-Za-z0-9._:\- ]|\\x\{[0-9A-Fa-f]{1,6}\}|\\x[0-9A-Fa-f]{2})`;
const QUANT = String.raw`(?:\{\d{1,4}(?:,\d{0,4})?\}|[*+?])?`;
const SAFE_PATTERN = new RegExp(String.raw`^\^(?:(?:${LITERAL}|\[\^?${CLASS_ITEM}+\])${QUANT})*\$$`);
/** Any UTF-16 surrogate or NUL: strings with them are left to the validator. */
const SURROGATE_OR_NUL = /[\0\uD800-\uDFFF]/;

function stringCheck(r: StringRules, where: string): Check {
  onlySet(r, new Set(["pattern", "min_len", "max_len"]), where, new Set([text.number]));
  const checks: Array<(s: string) => boolean> = [];
  if (hasExtension(r, text) && getExtension(r, text)) checks.push((s) => !SURROGATE_OR_NUL.test(s));
  if (isFieldSet(r, StringRulesSchema.field.pattern)) {
    if (!SAFE_PATTERN.test(r.pattern)) throw new Unsupported(`${where}: pattern ${r.pattern}`);
    const re = new RegExp(r.pattern.replace(/\\x\{([0-9A-Fa-f]+)\}/g, "\\u{$1}"), "u");
    checks.push((s) => re.test(s));
  }
  const min = isFieldSet(r, StringRulesSchema.field.minLen) ? Number(r.minLen) : 0;
  const max = isFieldSet(r, StringRulesSchema.field.maxLen) ? Number(r.maxLen) : Infinity;
  if (min > 0 || max < Infinity) {
    // Code points, as protovalidate counts: strings with surrogates are left to the validator.
    checks.push((s) => s.length >= min && s.length <= max && !SURROGATE_OR_NUL.test(s));
  }
  return (v) => {
    if (typeof v !== "string") return false;
    for (const c of checks) if (!c(v)) return false;
    return true;
  };
}

function doubleCheck(r: DoubleRules, where: string): Check {
  onlySet(r, new Set(["gt", "gte", "lt", "lte"]), where);
  const lo = r.greaterThan;
  const hi = r.lessThan;
  return (v) => {
    if (typeof v !== "number" || Number.isNaN(v)) return false;
    if (lo.case === "gt" && !(v > (lo.value as number))) return false;
    if (lo.case === "gte" && !(v >= (lo.value as number))) return false;
    if (hi.case === "lt" && !(v < (hi.value as number))) return false;
    if (hi.case === "lte" && !(v <= (hi.value as number))) return false;
    return true;
  };
}

/** 2000-01-01T00:00:00Z and 2100-01-01T00:00:00Z in Unix seconds (the mesh_time range). */
const MESH_TIME_FROM = 946_684_800n;
const MESH_TIME_UNTIL = 4_102_444_800n;

function timestampCheck(r: TimestampRules, where: string): Check {
  onlySet(r, new Set(), where, new Set([mesh_time.number]));
  if (!(hasExtension(r, mesh_time) && getExtension(r, mesh_time))) return () => true;
  return (v) => {
    const t = v as Timestamp;
    return t.seconds >= MESH_TIME_FROM && t.seconds < MESH_TIME_UNTIL && t.nanos >= 0 && t.nanos <= 999_999_999;
  };
}
