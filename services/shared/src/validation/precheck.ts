import {
  getExtension,
  getOption,
  hasExtension,
  isFieldSet,
  ScalarType,
  type DescEnum,
  type DescField,
  type DescMessage,
  type Message,
  type MessageShape,
} from "@bufbuild/protobuf";
import { isScalarZeroValue, reflect, scalarEquals, scalarZeroValue } from "@bufbuild/protobuf/reflect";
import { FeatureSet_FieldPresence, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  EnumRulesSchema,
  field as fieldRulesOption,
  file_buf_validate_validate,
  Ignore,
  MapRulesSchema,
  message as messageRulesOption,
  oneof as oneofRulesOption,
  RepeatedRulesSchema,
  StringRulesSchema,
  type DoubleRules,
  type EnumRules,
  type FieldRules,
  type Fixed32Rules,
  type Fixed64Rules,
  type Int32Rules,
  type Int64Rules,
  type SFixed32Rules,
  type SFixed64Rules,
  type SInt32Rules,
  type SInt64Rules,
  type StringRules,
  type TimestampRules,
  type UInt32Rules,
  type UInt64Rules,
} from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { mesh_time, text } from "../gen/logistics/common/v1/validation_pb.js";

/**
 * A fast test that a message passes its protovalidate rules: `true` means it certainly does;
 * `false` means "not known" (it may be invalid), and only then must the real validator run (it
 * names the violations). Never a substitute for the validator's verdict on a failing message.
 */
export type Precheck<Desc extends DescMessage> = (message: MessageShape<Desc>) => boolean;

type Check = (value: unknown) => boolean;
type MessageCheck = (message: Record<string, unknown>) => boolean;

/** Unsupported: some rule of the message graph is outside what {@link compilePrecheck} knows. */
class Unsupported extends Error {}

/**
 * Compiles the protovalidate rules of `schema` (and every message it contains) into plain
 * JavaScript checks, once, so that a hot path (ingest judges every scan, the server every request)
 * pays a few comparisons per field instead of an interpreted CEL and RE2 evaluation.
 *
 * Only a common subset is compiled, each rule with protovalidate's meaning:
 * - string `pattern` (anchored patterns of literal characters and character classes with
 *   quantifiers, which mean the same in RE2 and in a JavaScript `u` RegExp; classes may name code
 *   points as `\xHH` or `\x{H...}`, as the free-text pattern does), `min_len`/`max_len` (in code
 *   points), `const`, `in`, `not_in`, and the mesh's `text` rule;
 * - `gt`/`gte`/`lt`/`lte` (not an exclusive range, where the lower bound is above the upper),
 *   `const`, `in`, `not_in` on double and on every integer type (int32, int64, uint32, uint64,
 *   sint32, sint64, fixed32, fixed64, sfixed32, sfixed64);
 * - enum `defined_only`, `const`, `in`, `not_in`;
 * - repeated `min_items`, `max_items`, `unique` (of strings, integers, bools and enums) and
 *   `items` rules; map `min_pairs`, `max_pairs`, `keys` (of string keys) and `values` rules;
 * - the mesh's `mesh_time` timestamp rule;
 * - `required` and `ignore` (`IGNORE_IF_ZERO_VALUE`, `IGNORE_ALWAYS`) on fields, and `ignore` on
 *   list items and map keys and values, with protovalidate's presence rules: a proto3 scalar or
 *   enum is "set" when it is not its zero value, a list or map when it is not empty, a message
 *   when it is present.
 *
 * Any other rule anywhere in the graph (message rules such as CEL expressions or message oneof
 * rules, oneof rules and oneof members, field CEL expressions, other rule fields, predefined rules
 * other than the mesh's, scalars with explicit presence, rules on the wrong type) makes this
 * return undefined: the caller then validates every message of the schema with protovalidate.
 * Each compiled check is conservative: a string with a surrogate or NUL under a length rule, a
 * NaN, a value of an unexpected JavaScript type answer "not known".
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

const ALWAYS: MessageCheck = () => true;

function compileMessage(desc: DescMessage, compiling: Map<string, Check>): Check {
  const known = compiling.get(desc.typeName);
  if (known) return known;
  let checks: MessageCheck[] = [];
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
  checks = desc.fields.map((f) => compileField(f, compiling)).filter((c) => c !== ALWAYS);
  return entry;
}

/** The FieldRules type cases compiled here, by scalar type of the field (protovalidate refuses any other). */
const NUMERIC_CASE = new Map<ScalarType, string>([
  [ScalarType.DOUBLE, "double"],
  [ScalarType.INT32, "int32"],
  [ScalarType.INT64, "int64"],
  [ScalarType.UINT32, "uint32"],
  [ScalarType.UINT64, "uint64"],
  [ScalarType.SINT32, "sint32"],
  [ScalarType.SINT64, "sint64"],
  [ScalarType.FIXED32, "fixed32"],
  [ScalarType.FIXED64, "fixed64"],
  [ScalarType.SFIXED32, "sfixed32"],
  [ScalarType.SFIXED64, "sfixed64"],
]);
const TYPE_CASES: ReadonlySet<string> = new Set(["string", "enum", "repeated", "map", "timestamp", ...NUMERIC_CASE.values()]);
const FIELD_RULES: ReadonlySet<string> = new Set(["required", "ignore", ...TYPE_CASES]);
const ELEMENT_RULES: ReadonlySet<string> = new Set(["ignore", ...TYPE_CASES]);

function compileField(f: DescField, compiling: Map<string, Check>): MessageCheck {
  const where = `${f.parent.typeName}.${f.name}`;
  const rules = getOption(f, fieldRulesOption);
  onlySet(rules, FIELD_RULES, where);
  // Whether a proto2 `required` field must be set is the validator's option (legacyRequired), whatever its ignore.
  if (f.presence === FeatureSet_FieldPresence.LEGACY_REQUIRED) throw new Unsupported(`${where}: legacy required`);
  if (rules.ignore === Ignore.ALWAYS) return ALWAYS;
  if (rules.ignore !== Ignore.UNSPECIFIED && rules.ignore !== Ignore.IF_ZERO_VALUE) throw new Unsupported(where);
  if (f.oneof) throw new Unsupported(`${where}: oneof member`);
  // IGNORE_IF_ZERO_VALUE: the field's rules apply only when it is set.
  const ifSet = rules.ignore === Ignore.IF_ZERO_VALUE;
  const required = rules.required;
  const name = f.localName;

  switch (f.fieldKind) {
    case "scalar":
    case "enum": {
      if (f.presence !== FeatureSet_FieldPresence.IMPLICIT) throw new Unsupported(`${where}: explicit presence`);
      const check = f.fieldKind === "scalar" ? scalarCheck(f.scalar, f.longAsString, rules, where) : enumCheck(f.enum, rules, where);
      if (!check && !required) return ALWAYS;
      if (check && !required && !ifSet) return (m) => check(m[name]);
      // Implicit presence: the field is set when it is not its zero value.
      const scalar = f.fieldKind === "scalar" ? f.scalar : undefined;
      const enumZero = f.fieldKind === "enum" ? f.enum.values[0]?.number : undefined;
      const isZero: Check = scalar === undefined ? (v) => v === enumZero : (v) => isScalarZeroValue(scalar, v);
      return (m) => {
        const v = m[name];
        if (isZero(v)) {
          if (required) return false;
          if (ifSet) return true;
        }
        return check ? check(v) : true;
      };
    }
    case "message": {
      const inner = messageCheck(f.message, rules, where, compiling);
      return (m) => {
        const v = m[name];
        if (v === undefined) return !required;
        return inner(v);
      };
    }
    case "list": {
      if (rules.type.case !== undefined && rules.type.case !== "repeated") throw new Unsupported(where);
      let min = 0;
      let max = Infinity;
      let unique = false;
      let items: FieldRules | undefined;
      if (rules.type.case === "repeated") {
        const r = rules.type.value;
        onlySet(r, new Set(["min_items", "max_items", "unique", "items"]), where);
        if (isFieldSet(r, RepeatedRulesSchema.field.minItems)) min = Number(r.minItems);
        if (isFieldSet(r, RepeatedRulesSchema.field.maxItems)) max = Number(r.maxItems);
        unique = r.unique;
        items = r.items;
      }
      if (unique) {
        // Strict equality is protovalidate's equality only for these (not floats: NaN; not bytes, messages).
        const comparable =
          f.listKind === "enum" ||
          (f.listKind === "scalar" && !f.longAsString && f.scalar !== ScalarType.BYTES && f.scalar !== ScalarType.FLOAT && f.scalar !== ScalarType.DOUBLE);
        if (!comparable) throw new Unsupported(`${where}: unique`);
      }
      const item = elementCheck(elementOf(f), items, `${where} items`, compiling);
      if (min === 0 && max === Infinity && !unique && !item && !required) return ALWAYS;
      return (m) => {
        const list = m[name] as unknown[];
        if (list.length === 0) {
          if (required) return false;
          if (ifSet) return true;
        }
        if (list.length < min || list.length > max) return false;
        if (unique && new Set(list).size !== list.length) return false;
        if (item) for (const v of list) if (!item(v)) return false;
        return true;
      };
    }
    case "map": {
      if (rules.type.case !== undefined && rules.type.case !== "map") throw new Unsupported(where);
      let min = 0;
      let max = Infinity;
      let keyRules: FieldRules | undefined;
      let valueRules: FieldRules | undefined;
      if (rules.type.case === "map") {
        const r = rules.type.value;
        onlySet(r, new Set(["min_pairs", "max_pairs", "keys", "values"]), where);
        if (isFieldSet(r, MapRulesSchema.field.minPairs)) min = Number(r.minPairs);
        if (isFieldSet(r, MapRulesSchema.field.maxPairs)) max = Number(r.maxPairs);
        keyRules = r.keys;
        valueRules = r.values;
      }
      // Keys are JavaScript property names: only string keys are the values protovalidate sees.
      if (keyRules && f.mapKey !== ScalarType.STRING) throw new Unsupported(`${where} keys`);
      const key = elementCheck({ kind: "scalar", scalar: ScalarType.STRING, longAsString: false }, keyRules, `${where} keys`, compiling);
      const value = elementCheck(elementOf(f), valueRules, `${where} values`, compiling);
      if (min === 0 && max === Infinity && !key && !value && !required) return ALWAYS;
      return (m) => {
        const obj = m[name] as Record<string, unknown>;
        const keys = Object.keys(obj);
        if (keys.length === 0) {
          if (required) return false;
          if (ifSet) return true;
        }
        if (keys.length < min || keys.length > max) return false;
        for (const k of keys) if ((key && !key(k)) || (value && !value(obj[k]))) return false;
        return true;
      };
    }
  }
}

type Element =
  | { kind: "scalar"; scalar: ScalarType; longAsString: boolean }
  | { kind: "enum"; enum: DescEnum }
  | { kind: "message"; message: DescMessage };

/** What a list holds, or a map's values. */
function elementOf(f: DescField & { fieldKind: "list" | "map" }): Element {
  if (f.fieldKind === "list") {
    if (f.listKind === "message") return { kind: "message", message: f.message };
    if (f.listKind === "enum") return { kind: "enum", enum: f.enum };
    return { kind: "scalar", scalar: f.scalar, longAsString: f.longAsString };
  }
  if (f.mapKind === "message") return { kind: "message", message: f.message };
  if (f.mapKind === "enum") return { kind: "enum", enum: f.enum };
  return { kind: "scalar", scalar: f.scalar, longAsString: false };
}

/**
 * The check of one list item, map key or map value under its rules (`items`, `keys`, `values`),
 * or undefined when every value passes. Their `ignore` skips zero scalars and enums only
 * (IGNORE_IF_ZERO_VALUE) or everything (IGNORE_ALWAYS); `required` has no meaning there.
 */
function elementCheck(e: Element, rules: FieldRules | undefined, where: string, compiling: Map<string, Check>): Check | undefined {
  if (rules) {
    onlySet(rules, ELEMENT_RULES, where);
    if (rules.ignore === Ignore.ALWAYS) return undefined;
    if (rules.ignore !== Ignore.UNSPECIFIED && rules.ignore !== Ignore.IF_ZERO_VALUE) throw new Unsupported(where);
  }
  const skipZero = rules?.ignore === Ignore.IF_ZERO_VALUE;
  switch (e.kind) {
    case "message":
      // A message element is always validated (its zero value is a message too).
      return messageCheck(e.message, rules, where, compiling);
    case "enum": {
      const check = rules && enumCheck(e.enum, rules, where);
      if (!check || !skipZero) return check;
      const zero = e.enum.values[0]?.number;
      return (v) => v === zero || check(v);
    }
    case "scalar": {
      const check = rules && scalarCheck(e.scalar, e.longAsString, rules, where);
      if (!check || !skipZero) return check;
      const zero = scalarZeroValue(e.scalar, false);
      const scalar = e.scalar;
      return (v) => scalarEquals(scalar, zero, v as typeof zero) || check(v);
    }
  }
}

/** The check of a present message value under the rules of its field (or list item, map value). */
function messageCheck(desc: DescMessage, rules: FieldRules | undefined, where: string, compiling: Map<string, Check>): Check {
  const type = rules?.type;
  if (desc.typeName === "google.protobuf.Timestamp" && type?.case === "timestamp") return timestampCheck(type.value, where);
  // Rules of another type, or for wrappers, Any, Duration...: not compiled.
  if (type?.case !== undefined) throw new Unsupported(`${where}: ${type.case} rules`);
  return compileMessage(desc, compiling);
}

function scalarCheck(scalar: ScalarType, longAsString: boolean, rules: FieldRules, where: string): Check | undefined {
  const r = rules.type;
  if (r.case === undefined) return undefined;
  if (scalar === ScalarType.STRING && r.case === "string") return stringCheck(r.value, where);
  if (NUMERIC_CASE.get(scalar) !== r.case || longAsString) throw new Unsupported(`${where}: ${r.case} rules`);
  return numericCheck(r.value as NumericRules, where);
}

/** Throws Unsupported unless every set field of `rules` is in `allowed` and it carries no other extensions than `extensions`. */
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

/** The rule messages of buf/validate/validate.proto, for reflection by {@link onlySet}. */
const RULE_SCHEMAS = new Map<string, DescMessage>(file_buf_validate_validate.messages.map((s) => [s.typeName, s]));

/** Characters a compiled pattern may contain literally, in and out of classes. */
const LITERAL = String.raw`[A-Za-z0-9_:\-]`;
const CLASS_ITEM = String.raw`(?:[A-Za-z0-9._:\- ]|\\x\{[0-9A-Fa-f]{1,6}\}|\\x[0-9A-Fa-f]{2})`;
const QUANT = String.raw`(?:\{\d{1,4}(?:,\d{0,4})?\}|[*+?])?`;
const SAFE_PATTERN = new RegExp(String.raw`^\^(?:(?:${LITERAL}|\[\^?${CLASS_ITEM}+\])${QUANT})*\$$`);
/** Any UTF-16 surrogate or NUL: strings with them are left to the validator. */
const SURROGATE_OR_NUL = /[\0\uD800-\uDFFF]/;

function stringCheck(r: StringRules, where: string): Check {
  onlySet(r, new Set(["pattern", "min_len", "max_len", "const", "in", "not_in"]), where, new Set([text.number]));
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
  // Equality of JavaScript strings, as protovalidate compares them.
  if (isFieldSet(r, StringRulesSchema.field.const)) {
    const c = r.const;
    checks.push((s) => s === c);
  }
  if (r.in.length > 0) {
    const allowed = new Set(r.in);
    checks.push((s) => allowed.has(s));
  }
  if (r.notIn.length > 0) {
    const refused = new Set(r.notIn);
    checks.push((s) => !refused.has(s));
  }
  return (v) => {
    if (typeof v !== "string") return false;
    for (const c of checks) if (!c(v)) return false;
    return true;
  };
}

type NumericRules =
  | DoubleRules
  | Int32Rules
  | Int64Rules
  | UInt32Rules
  | UInt64Rules
  | SInt32Rules
  | SInt64Rules
  | Fixed32Rules
  | Fixed64Rules
  | SFixed32Rules
  | SFixed64Rules;

/**
 * Range, `const`, `in` and `not_in` of a double or integer. Values of 64-bit types are bigints,
 * of the others numbers, like the rule values (a value of another type is "not known"). NaN is
 * left to the validator; an exclusive range (lower bound above the upper) is not compiled.
 */
function numericCheck(r: NumericRules, where: string): Check {
  const desc = messageDescOf(r);
  onlySet(r, new Set(["gt", "gte", "lt", "lte", "const", "in", "not_in"]), where);
  const lo = r.greaterThan;
  const hi = r.lessThan;
  const bounds: Array<number | bigint> = [lo.value, hi.value].filter((b) => b !== undefined);
  if (bounds.some((b) => typeof b === "number" && Number.isNaN(b))) throw new Unsupported(`${where}: NaN bound`);
  if (lo.value !== undefined && hi.value !== undefined && hi.value < lo.value) throw new Unsupported(`${where}: exclusive range`);
  const constField = desc.field["const"];
  const hasConst = constField !== undefined && isFieldSet(r, constField);
  const c: number | bigint = r.const;
  const allowed = r.in.length > 0 ? new Set<number | bigint>(r.in) : undefined;
  const refused = r.notIn.length > 0 ? new Set<number | bigint>(r.notIn) : undefined;
  const type = typeof c;
  return (v) => {
    if (typeof v !== type) return false;
    const n = v as number | bigint;
    if (type === "number" && Number.isNaN(n)) return false;
    if (lo.case === "gt" && !(n > lo.value)) return false;
    if (lo.case === "gte" && !(n >= lo.value)) return false;
    if (hi.case === "lt" && !(n < hi.value)) return false;
    if (hi.case === "lte" && !(n <= hi.value)) return false;
    if (hasConst && n !== c) return false;
    if (allowed && !allowed.has(n)) return false;
    if (refused?.has(n)) return false;
    return true;
  };
}

function enumCheck(e: DescEnum, rules: FieldRules, where: string): Check | undefined {
  if (rules.type.case === undefined) return undefined;
  if (rules.type.case !== "enum") throw new Unsupported(`${where}: ${rules.type.case} rules`);
  const r: EnumRules = rules.type.value;
  onlySet(r, new Set(["defined_only", "const", "in", "not_in"]), where);
  const defined = r.definedOnly ? new Set(e.values.map((v) => v.number)) : undefined;
  const hasConst = isFieldSet(r, EnumRulesSchema.field.const);
  const c = r.const;
  const allowed = r.in.length > 0 ? new Set(r.in) : undefined;
  const refused = r.notIn.length > 0 ? new Set(r.notIn) : undefined;
  return (v) => {
    if (typeof v !== "number") return false;
    if (defined && !defined.has(v)) return false;
    if (hasConst && v !== c) return false;
    if (allowed && !allowed.has(v)) return false;
    if (refused?.has(v)) return false;
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
