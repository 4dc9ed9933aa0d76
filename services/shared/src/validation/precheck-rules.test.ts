import assert from "node:assert/strict";
import { describe, it } from "vitest";
import fc from "fast-check";
import { create, createFileRegistry, setExtension, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import {
  DescriptorProtoSchema,
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as T,
  FieldDescriptorProtoSchema,
  FieldOptions_JSType,
  FieldOptionsSchema,
  file_google_protobuf_duration,
  file_google_protobuf_timestamp,
  file_google_protobuf_wrappers,
  FileDescriptorProtoSchema,
  MessageOptionsSchema,
  OneofDescriptorProtoSchema,
  OneofOptionsSchema,
  type DescriptorProto,
  type FieldDescriptorProto,
} from "@bufbuild/protobuf/wkt";
import {
  field as fieldRulesExt,
  FieldRulesSchema,
  file_buf_validate_validate,
  Ignore,
  message as messageRulesExt,
  MessageRulesSchema,
  oneof as oneofRulesExt,
  OneofRulesSchema,
} from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { isPlainValue } from "../testing/plain-value.js";
import { createMeshValidator } from "./mesh-validator.js";
import { compilePrecheck } from "./precheck.js";

/**
 * Every rule compilePrecheck compiles, on a field of its own in a message built for the test, is
 * judged by the precheck and by protovalidate on values at and around its bounds and on random
 * values of the field's type. The precheck may say "valid" only where protovalidate does, and
 * must say it for every valid value that is plain (no NaN, no NUL or surrogate in a string),
 * or it saves nothing.
 */

type RulesInit = MessageInitShape<typeof FieldRulesSchema>;
type FieldSpec =
  | { type: T; typeName?: string; repeated?: boolean }
  | { map: readonly [key: T, value: T, valueTypeName?: string] };

interface RuleCase {
  readonly what: string;
  readonly field: FieldSpec;
  readonly rules: RulesInit;
  /** Values at and around the rule's bounds; random values of the field's type are added. */
  readonly edges: readonly unknown[];
  /** Random values (default: of the field's type). */
  readonly random?: fc.Arbitrary<unknown>;
  /** The rules admit every value (IGNORE_ALWAYS, `unique: false`). */
  readonly admitsAll?: true;
}

const PKG = "precheck.test.v1";
const COLOR = `.${PKG}.Color`;
const INNER = `.${PKG}.Inner`;
/** Color's numbers: 0, 1, 2 and 5 are defined. */
const COLOR_NUMBERS = [-1, 0, 1, 2, 3, 4, 5, 6];

const U32_MAX = 0xffff_ffff;
const I32_MIN = -0x8000_0000;
const I32_MAX = 0x7fff_ffff;
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
const U64_MAX = 2n ** 64n - 1n;

const around = (...xs: number[]): number[] => xs.flatMap((x) => [x - 1, x, x + 1]);
const aroundBig = (...xs: bigint[]): bigint[] => xs.flatMap((x) => [x - 1n, x, x + 1n]);

/** The range of each scalar type, to keep edges to values the wire can carry. */
function inRange(type: T, v: unknown): boolean {
  switch (type) {
    case T.UINT32:
    case T.FIXED32:
      return typeof v === "number" && v >= 0 && v <= U32_MAX;
    case T.INT32:
    case T.SINT32:
    case T.SFIXED32:
      return typeof v === "number" && v >= I32_MIN && v <= I32_MAX;
    case T.INT64:
    case T.SINT64:
    case T.SFIXED64:
      return typeof v === "bigint" && v >= I64_MIN && v <= I64_MAX;
    case T.UINT64:
    case T.FIXED64:
      return typeof v === "bigint" && v >= 0n && v <= U64_MAX;
    default:
      return true;
  }
}

const STRING = fc.oneof(fc.string({ maxLength: 12 }), fc.string({ unit: "binary", maxLength: 12 }), fc.constantFrom("a", "b", "ab", "AB", ""));
const INNER_VALUES = [undefined, { code: "AB" }, { code: "A" }, { code: "" }, { code: "ab" }];

function randomOf(type: T, typeName?: string): fc.Arbitrary<unknown> {
  switch (type) {
    case T.DOUBLE:
      return fc.double();
    case T.UINT32:
    case T.FIXED32:
      return fc.integer({ min: 0, max: U32_MAX });
    case T.INT32:
    case T.SINT32:
    case T.SFIXED32:
      return fc.integer();
    case T.INT64:
    case T.SINT64:
    case T.SFIXED64:
      return fc.bigInt({ min: I64_MIN, max: I64_MAX });
    case T.UINT64:
    case T.FIXED64:
      return fc.bigInt({ min: 0n, max: U64_MAX });
    case T.STRING:
      return STRING;
    case T.ENUM:
      return fc.constantFrom(...COLOR_NUMBERS, I32_MIN, I32_MAX);
    case T.MESSAGE:
      assert.equal(typeName, INNER);
      return fc.constantFrom(...INNER_VALUES.filter((v) => v !== undefined));
    default:
      throw new Error(`no values for type ${type}`);
  }
}

function randomFor(spec: FieldSpec): fc.Arbitrary<unknown> {
  if ("map" in spec) {
    const [, value, valueTypeName] = spec.map;
    return fc.dictionary(STRING, randomOf(value, valueTypeName), { maxKeys: 5 });
  }
  const one = randomOf(spec.type, spec.typeName);
  return spec.repeated ? fc.array(one, { maxLength: 12 }) : one;
}

/** A list made of `values` in every length from 0 to `maxLength`, duplicates included. */
const listsOf = (values: readonly unknown[], maxLength: number): fc.Arbitrary<unknown[]> => fc.array(fc.constantFrom(...values), { maxLength });

const CASES: RuleCase[] = [
  // Integers of every type.
  { what: "uint32 gte 1 lte 1000000", field: { type: T.UINT32 }, rules: { type: { case: "uint32", value: { greaterThan: { case: "gte", value: 1 }, lessThan: { case: "lte", value: 1_000_000 } } } }, edges: [...around(0, 1, 1_000_000), U32_MAX] },
  { what: "uint32 lte 5000", field: { type: T.UINT32 }, rules: { type: { case: "uint32", value: { lessThan: { case: "lte", value: 5000 } } } }, edges: [...around(0, 5000), U32_MAX] },
  { what: "uint32 gt 10 lt 20", field: { type: T.UINT32 }, rules: { type: { case: "uint32", value: { greaterThan: { case: "gt", value: 10 }, lessThan: { case: "lt", value: 20 } } } }, edges: around(0, 10, 20) },
  { what: "uint32 const 7", field: { type: T.UINT32 }, rules: { type: { case: "uint32", value: { const: 7 } } }, edges: around(0, 7) },
  { what: "uint32 const 0", field: { type: T.UINT32 }, rules: { type: { case: "uint32", value: { const: 0 } } }, edges: around(0, 1) },
  { what: "uint32 in [1, 3, 5]", field: { type: T.UINT32 }, rules: { type: { case: "uint32", value: { in: [1, 3, 5] } } }, edges: around(0, 3, 5) },
  { what: "uint32 not_in [0, 4]", field: { type: T.UINT32 }, rules: { type: { case: "uint32", value: { notIn: [0, 4] } } }, edges: around(0, 4) },
  { what: "uint32 required", field: { type: T.UINT32 }, rules: { required: true }, edges: [0, 1, U32_MAX] },
  { what: "uint32 IGNORE_IF_ZERO_VALUE gte 5", field: { type: T.UINT32 }, rules: { ignore: Ignore.IF_ZERO_VALUE, type: { case: "uint32", value: { greaterThan: { case: "gte", value: 5 } } } }, edges: around(0, 5) },
  { what: "uint32 required IGNORE_IF_ZERO_VALUE gte 5", field: { type: T.UINT32 }, rules: { required: true, ignore: Ignore.IF_ZERO_VALUE, type: { case: "uint32", value: { greaterThan: { case: "gte", value: 5 } } } }, edges: around(0, 5) },
  { what: "uint32 required IGNORE_ALWAYS gte 5", field: { type: T.UINT32 }, rules: { required: true, ignore: Ignore.ALWAYS, type: { case: "uint32", value: { greaterThan: { case: "gte", value: 5 } } } }, edges: around(0, 5), admitsAll: true },
  { what: "int32 gte -10 lt 10", field: { type: T.INT32 }, rules: { type: { case: "int32", value: { greaterThan: { case: "gte", value: -10 }, lessThan: { case: "lt", value: 10 } } } }, edges: [...around(-10, 0, 10), I32_MIN, I32_MAX] },
  { what: "int32 in [-1, 0, 1] not_in [0]", field: { type: T.INT32 }, rules: { type: { case: "int32", value: { in: [-1, 0, 1], notIn: [0] } } }, edges: around(-1, 1) },
  { what: "int32 const -3", field: { type: T.INT32 }, rules: { type: { case: "int32", value: { const: -3 } } }, edges: around(-3, 0) },
  { what: "int32 gte 5 lte 5", field: { type: T.INT32 }, rules: { type: { case: "int32", value: { greaterThan: { case: "gte", value: 5 }, lessThan: { case: "lte", value: 5 } } } }, edges: around(0, 5) },
  { what: "sint32 gt -100", field: { type: T.SINT32 }, rules: { type: { case: "sint32", value: { greaterThan: { case: "gt", value: -100 } } } }, edges: [...around(-100, 0), I32_MIN, I32_MAX] },
  { what: "sfixed32 lte -1 not_in [-7]", field: { type: T.SFIXED32 }, rules: { type: { case: "sfixed32", value: { lessThan: { case: "lte", value: -1 }, notIn: [-7] } } }, edges: around(-7, -1, 0) },
  { what: "fixed32 gte 10 lte 10", field: { type: T.FIXED32 }, rules: { type: { case: "fixed32", value: { greaterThan: { case: "gte", value: 10 }, lessThan: { case: "lte", value: 10 } } } }, edges: around(0, 10) },
  { what: "int64 gt -5 lte 2^40", field: { type: T.INT64 }, rules: { type: { case: "int64", value: { greaterThan: { case: "gt", value: -5n }, lessThan: { case: "lte", value: 2n ** 40n } } } }, edges: [...aroundBig(-5n, 0n, 2n ** 40n), I64_MIN, I64_MAX] },
  { what: "int64 const 2^53+1", field: { type: T.INT64 }, rules: { type: { case: "int64", value: { const: 2n ** 53n + 1n } } }, edges: aroundBig(0n, 2n ** 53n, 2n ** 53n + 1n) },
  { what: "int64 in [-1, 2^62] not_in [0]", field: { type: T.INT64 }, rules: { type: { case: "int64", value: { in: [-1n, 2n ** 62n], notIn: [0n] } } }, edges: aroundBig(-1n, 2n ** 62n) },
  { what: "uint64 gte 1 lt 2^63", field: { type: T.UINT64 }, rules: { type: { case: "uint64", value: { greaterThan: { case: "gte", value: 1n }, lessThan: { case: "lt", value: 2n ** 63n } } } }, edges: [...aroundBig(0n, 1n, 2n ** 63n), U64_MAX] },
  { what: "uint64 IGNORE_IF_ZERO_VALUE const 9", field: { type: T.UINT64 }, rules: { ignore: Ignore.IF_ZERO_VALUE, type: { case: "uint64", value: { const: 9n } } }, edges: aroundBig(0n, 9n) },
  { what: "sint64 lt 0", field: { type: T.SINT64 }, rules: { type: { case: "sint64", value: { lessThan: { case: "lt", value: 0n } } } }, edges: [...aroundBig(0n), I64_MIN, I64_MAX] },
  { what: "fixed64 lte 2^64-1 gt 3", field: { type: T.FIXED64 }, rules: { type: { case: "fixed64", value: { greaterThan: { case: "gt", value: 3n }, lessThan: { case: "lte", value: U64_MAX } } } }, edges: [...aroundBig(0n, 3n), U64_MAX] },
  { what: "sfixed64 gte -2^63 in", field: { type: T.SFIXED64 }, rules: { type: { case: "sfixed64", value: { greaterThan: { case: "gte", value: I64_MIN }, in: [I64_MIN, 5n] } } }, edges: [...aroundBig(0n, 5n), I64_MIN, I64_MAX] },
  { what: "int64 required", field: { type: T.INT64 }, rules: { required: true }, edges: [0n, 1n, -1n] },

  // Doubles: NaN, infinities and signed zeros.
  { what: "double gte -90 lte 90", field: { type: T.DOUBLE }, rules: { type: { case: "double", value: { greaterThan: { case: "gte", value: -90 }, lessThan: { case: "lte", value: 90 } } } }, edges: [...around(-90, 0, 90), -90.0001, 90.0001, Number.NaN, Infinity, -Infinity, -0] },
  { what: "double gt 0 lte 20000", field: { type: T.DOUBLE }, rules: { type: { case: "double", value: { greaterThan: { case: "gt", value: 0 }, lessThan: { case: "lte", value: 20000 } } } }, edges: [0, -0, Number.MIN_VALUE, 20000, 20000.000001, Number.NaN, Infinity] },
  { what: "double const 1.5", field: { type: T.DOUBLE }, rules: { type: { case: "double", value: { const: 1.5 } } }, edges: [1.5, 1.5000000001, 0, -0, Number.NaN] },
  { what: "double in [0.5, 0] not_in [0.25]", field: { type: T.DOUBLE }, rules: { type: { case: "double", value: { in: [0.5, 0], notIn: [0.25] } } }, edges: [0.5, 0, -0, 0.25, Number.NaN, Infinity] },
  { what: "double not_in [0]", field: { type: T.DOUBLE }, rules: { type: { case: "double", value: { notIn: [0] } } }, edges: [0, -0, 1, Number.NaN, -Infinity] },
  { what: "double required", field: { type: T.DOUBLE }, rules: { required: true }, edges: [0, -0, 1, Number.NaN] },
  { what: "double IGNORE_IF_ZERO_VALUE gt 1", field: { type: T.DOUBLE }, rules: { ignore: Ignore.IF_ZERO_VALUE, type: { case: "double", value: { greaterThan: { case: "gt", value: 1 } } } }, edges: [0, -0, 1, 2, Number.NaN] },

  // Enums (Color defines 0, 1, 2 and 5).
  { what: "enum defined_only", field: { type: T.ENUM, typeName: COLOR }, rules: { type: { case: "enum", value: { definedOnly: true } } }, edges: COLOR_NUMBERS },
  { what: "enum in [1, 2]", field: { type: T.ENUM, typeName: COLOR }, rules: { type: { case: "enum", value: { in: [1, 2] } } }, edges: COLOR_NUMBERS },
  { what: "enum not_in [0]", field: { type: T.ENUM, typeName: COLOR }, rules: { type: { case: "enum", value: { notIn: [0] } } }, edges: COLOR_NUMBERS },
  { what: "enum const 2", field: { type: T.ENUM, typeName: COLOR }, rules: { type: { case: "enum", value: { const: 2 } } }, edges: COLOR_NUMBERS },
  { what: "enum required defined_only", field: { type: T.ENUM, typeName: COLOR }, rules: { required: true, type: { case: "enum", value: { definedOnly: true } } }, edges: COLOR_NUMBERS },
  { what: "enum IGNORE_IF_ZERO_VALUE in [1]", field: { type: T.ENUM, typeName: COLOR }, rules: { ignore: Ignore.IF_ZERO_VALUE, type: { case: "enum", value: { in: [1] } } }, edges: COLOR_NUMBERS },
  { what: "enum defined_only not_in [0]", field: { type: T.ENUM, typeName: COLOR }, rules: { type: { case: "enum", value: { definedOnly: true, notIn: [0] } } }, edges: COLOR_NUMBERS },

  // Strings: const, in, not_in beside the rules compiled before.
  { what: "string const", field: { type: T.STRING }, rules: { type: { case: "string", value: { const: "abc" } } }, edges: ["abc", "ab", "abcd", "", "ABC"] },
  { what: "string in", field: { type: T.STRING }, rules: { type: { case: "string", value: { in: ["a", "b", "", "\u{1F4E6}"] } } }, edges: ["a", "b", "", "c", "\u{1F4E6}", "\uD83D", "a\0"] },
  { what: "string not_in min_len 1", field: { type: T.STRING }, rules: { type: { case: "string", value: { notIn: ["x", "yy"], minLen: 1n } } }, edges: ["x", "yy", "", "y", "xyz", "\0"] },
  { what: "string IGNORE_IF_ZERO_VALUE in", field: { type: T.STRING }, rules: { ignore: Ignore.IF_ZERO_VALUE, type: { case: "string", value: { in: ["a"] } } }, edges: ["", "a", "b"] },
  { what: "string required", field: { type: T.STRING }, rules: { required: true }, edges: ["", "a", "\0"] },
  { what: "string pattern in", field: { type: T.STRING }, rules: { type: { case: "string", value: { pattern: "^[a-z]{2}$", in: ["ab", "AB", "abc"] } } }, edges: ["ab", "AB", "abc", "cd", ""] },

  // Repeated fields.
  {
    what: "repeated string max_items 8 unique items pattern",
    field: { type: T.STRING, repeated: true },
    rules: { type: { case: "repeated", value: { maxItems: 8n, unique: true, items: { type: { case: "string", value: { pattern: "^[a-z][a-z0-9-]{1,31}$" } } } } } },
    edges: [[], ["dhl"], ["dhl", "ups"], ["dhl", "dhl"], ["DHL"], ["a"], Array.from({ length: 8 }, (_, i) => `c${i}`), Array.from({ length: 9 }, (_, i) => `c${i}`)],
    random: listsOf(["dhl", "ups", "x", "", "acme-1", "Acme"], 10),
  },
  { what: "repeated string min_items 1 max_items 3", field: { type: T.STRING, repeated: true }, rules: { type: { case: "repeated", value: { minItems: 1n, maxItems: 3n } } }, edges: [[], ["a"], ["a", "a", "a"], ["a", "b", "c", "d"]] },
  { what: "repeated string unique", field: { type: T.STRING, repeated: true }, rules: { type: { case: "repeated", value: { unique: true } } }, edges: [[], ["a"], ["a", "a"], ["a", "b"], ["", ""]], random: listsOf(["a", "b", "", "\uD800"], 20) },
  { what: "repeated string unique false", field: { type: T.STRING, repeated: true }, rules: { type: { case: "repeated", value: { unique: false } } }, edges: [[], ["a", "a"]], admitsAll: true },
  { what: "repeated string items IGNORE_IF_ZERO_VALUE pattern", field: { type: T.STRING, repeated: true }, rules: { type: { case: "repeated", value: { items: { ignore: Ignore.IF_ZERO_VALUE, type: { case: "string", value: { pattern: "^[A-Z]{2}$" } } } } } }, edges: [[], [""], ["AB", ""], ["A"], ["AB", "CD"]], random: listsOf(["AB", "", "a", "ABC"], 5) },
  { what: "repeated string items in not_in", field: { type: T.STRING, repeated: true }, rules: { type: { case: "repeated", value: { items: { type: { case: "string", value: { in: ["a", "b", "c"], notIn: ["c"] } } } } } }, edges: [[], ["a"], ["c"], ["d"], ["a", "b"]], random: listsOf(["a", "b", "c", "d", ""], 4) },
  { what: "repeated string items IGNORE_ALWAYS", field: { type: T.STRING, repeated: true }, rules: { type: { case: "repeated", value: { maxItems: 2n, items: { ignore: Ignore.ALWAYS, type: { case: "string", value: { pattern: "^[A-Z]{2}$" } } } } } }, edges: [[], ["x"], ["x", "y", "z"]] },
  { what: "repeated string required", field: { type: T.STRING, repeated: true }, rules: { required: true }, edges: [[], [""], ["a", "b"]] },
  { what: "repeated string IGNORE_IF_ZERO_VALUE min_items 2", field: { type: T.STRING, repeated: true }, rules: { ignore: Ignore.IF_ZERO_VALUE, type: { case: "repeated", value: { minItems: 2n } } }, edges: [[], ["a"], ["a", "b"]] },
  {
    what: "repeated enum max_items 10 items defined_only not_in [0]",
    field: { type: T.ENUM, typeName: COLOR, repeated: true },
    rules: { type: { case: "repeated", value: { maxItems: 10n, items: { type: { case: "enum", value: { definedOnly: true, notIn: [0] } } } } } },
    edges: [[], [1], [1, 2, 5], [0], [3], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]],
    random: listsOf(COLOR_NUMBERS, 12),
  },
  { what: "repeated enum unique", field: { type: T.ENUM, typeName: COLOR, repeated: true }, rules: { type: { case: "repeated", value: { unique: true } } }, edges: [[], [1, 2], [1, 1], [0, 0]], random: listsOf(COLOR_NUMBERS, 6) },
  { what: "repeated enum items IGNORE_IF_ZERO_VALUE in [2]", field: { type: T.ENUM, typeName: COLOR, repeated: true }, rules: { type: { case: "repeated", value: { items: { ignore: Ignore.IF_ZERO_VALUE, type: { case: "enum", value: { in: [2] } } } } } }, edges: [[], [0], [2, 0], [1]], random: listsOf(COLOR_NUMBERS, 4) },
  { what: "repeated uint32 unique items gte 1", field: { type: T.UINT32, repeated: true }, rules: { type: { case: "repeated", value: { unique: true, items: { type: { case: "uint32", value: { greaterThan: { case: "gte", value: 1 } } } } } } }, edges: [[], [1, 2], [1, 1], [0]], random: listsOf([0, 1, 2, 3], 6) },
  { what: "repeated uint32 items IGNORE_IF_ZERO_VALUE gte 5", field: { type: T.UINT32, repeated: true }, rules: { type: { case: "repeated", value: { items: { ignore: Ignore.IF_ZERO_VALUE, type: { case: "uint32", value: { greaterThan: { case: "gte", value: 5 } } } } } } }, edges: [[], [0], [0, 5], [4]], random: listsOf([0, 4, 5, 6], 4) },
  { what: "repeated int64 unique items lt 0", field: { type: T.INT64, repeated: true }, rules: { type: { case: "repeated", value: { unique: true, items: { type: { case: "int64", value: { lessThan: { case: "lt", value: 0n } } } } } } }, edges: [[], [-1n, -2n], [-1n, -1n], [0n]], random: listsOf([-2n, -1n, 0n, 1n], 6) },
  { what: "repeated double items gt 0", field: { type: T.DOUBLE, repeated: true }, rules: { type: { case: "repeated", value: { items: { type: { case: "double", value: { greaterThan: { case: "gt", value: 0 } } } } } } }, edges: [[], [1], [0], [-0], [Number.NaN], [Infinity]] },
  { what: "repeated message min_items 1 max_items 3 items IGNORE_ALWAYS", field: { type: T.MESSAGE, typeName: INNER, repeated: true }, rules: { type: { case: "repeated", value: { minItems: 1n, maxItems: 3n, items: { ignore: Ignore.ALWAYS } } } }, edges: [[], [{ code: "AB" }], [{ code: "A" }], [{}, {}, {}, {}]], random: listsOf(INNER_VALUES.slice(1), 5) },
  { what: "repeated message", field: { type: T.MESSAGE, typeName: INNER, repeated: true }, rules: {}, edges: [[], [{ code: "AB" }], [{ code: "AB" }, { code: "A" }]], random: listsOf(INNER_VALUES.slice(1), 4) },
  { what: "repeated message items IGNORE_IF_ZERO_VALUE", field: { type: T.MESSAGE, typeName: INNER, repeated: true }, rules: { type: { case: "repeated", value: { items: { ignore: Ignore.IF_ZERO_VALUE } } } }, edges: [[], [{}], [{ code: "AB" }]], random: listsOf(INNER_VALUES.slice(1), 4) },

  // Maps.
  {
    what: "map<string, string> max_pairs keys and values",
    field: { map: [T.STRING, T.STRING] },
    rules: { type: { case: "map", value: { maxPairs: 3n, keys: { type: { case: "string", value: { minLen: 1n, maxLen: 4n } } }, values: { type: { case: "string", value: { pattern: "^[a-z]*$" } } } } } },
    edges: [{}, { a: "b" }, { "": "b" }, { abcde: "b" }, { a: "B" }, { a: "", b: "", c: "", d: "" }],
  },
  { what: "map<string, uint32> values gte 1 lte 10", field: { map: [T.STRING, T.UINT32] }, rules: { type: { case: "map", value: { values: { type: { case: "uint32", value: { greaterThan: { case: "gte", value: 1 }, lessThan: { case: "lte", value: 10 } } } } } } }, edges: [{}, { a: 1 }, { a: 0 }, { a: 10, b: 11 }] },
  { what: "map<string, uint32> values IGNORE_IF_ZERO_VALUE gte 5", field: { map: [T.STRING, T.UINT32] }, rules: { type: { case: "map", value: { values: { ignore: Ignore.IF_ZERO_VALUE, type: { case: "uint32", value: { greaterThan: { case: "gte", value: 5 } } } } } } }, edges: [{}, { a: 0 }, { a: 4 }, { a: 5 }] },
  { what: "map<string, string> keys IGNORE_IF_ZERO_VALUE in", field: { map: [T.STRING, T.STRING] }, rules: { type: { case: "map", value: { keys: { ignore: Ignore.IF_ZERO_VALUE, type: { case: "string", value: { in: ["a", "b"] } } } } } }, edges: [{}, { "": "x" }, { a: "x" }, { c: "x" }] },
  { what: "map<string, Color> values defined_only", field: { map: [T.STRING, T.ENUM, COLOR] }, rules: { type: { case: "map", value: { values: { type: { case: "enum", value: { definedOnly: true } } } } } }, edges: [{}, { a: 1 }, { a: 3 }, { a: 0, b: 5 }] },
  { what: "map<string, Inner> max_pairs 2", field: { map: [T.STRING, T.MESSAGE, INNER] }, rules: { type: { case: "map", value: { maxPairs: 2n } } }, edges: [{}, { a: { code: "AB" } }, { a: { code: "A" } }, { a: {}, b: {}, c: {} }] },
  { what: "map<int32, string> values max_len 3", field: { map: [T.INT32, T.STRING] }, rules: { type: { case: "map", value: { values: { type: { case: "string", value: { maxLen: 3n } } } } } }, edges: [{}, { 1: "abc" }, { 1: "abcd" }, { [-1]: "" }], random: fc.dictionary(fc.integer().map(String), STRING, { maxKeys: 4 }) },
  { what: "map required", field: { map: [T.STRING, T.STRING] }, rules: { required: true }, edges: [{}, { a: "" }] },
  { what: "map IGNORE_IF_ZERO_VALUE min_pairs 2", field: { map: [T.STRING, T.STRING] }, rules: { ignore: Ignore.IF_ZERO_VALUE, type: { case: "map", value: { minPairs: 2n } } }, edges: [{}, { a: "" }, { a: "", b: "" }] },

  // Message fields.
  { what: "message required", field: { type: T.MESSAGE, typeName: INNER }, rules: { required: true }, edges: INNER_VALUES },
  { what: "message IGNORE_IF_ZERO_VALUE", field: { type: T.MESSAGE, typeName: INNER }, rules: { ignore: Ignore.IF_ZERO_VALUE }, edges: INNER_VALUES },
  { what: "message", field: { type: T.MESSAGE, typeName: INNER }, rules: {}, edges: INNER_VALUES },
  { what: "message IGNORE_ALWAYS required", field: { type: T.MESSAGE, typeName: INNER }, rules: { ignore: Ignore.ALWAYS, required: true }, edges: INNER_VALUES, admitsAll: true },
];

/** Rules compilePrecheck must decline (protovalidate then judges every message), each on a field of its own. */
const DECLINED: Array<{ what: string; field: FieldSpec; rules: RulesInit; extra?: (f: FieldDescriptorProto, m: DescriptorProto) => void }> = [
  { what: "an exclusive range", field: { type: T.UINT32 }, rules: { type: { case: "uint32", value: { greaterThan: { case: "gt", value: 10 }, lessThan: { case: "lt", value: 5 } } } } },
  { what: "a NaN bound", field: { type: T.DOUBLE }, rules: { type: { case: "double", value: { greaterThan: { case: "gt", value: Number.NaN } } } } },
  { what: "double finite", field: { type: T.DOUBLE }, rules: { type: { case: "double", value: { finite: true } } } },
  { what: "float rules", field: { type: T.FLOAT }, rules: { type: { case: "float", value: { greaterThan: { case: "gt", value: 0 } } } } },
  { what: "bool rules", field: { type: T.BOOL }, rules: { type: { case: "bool", value: { const: true } } } },
  { what: "bytes rules", field: { type: T.BYTES }, rules: { type: { case: "bytes", value: { maxLen: 3n } } } },
  { what: "int32 rules on a uint32", field: { type: T.UINT32 }, rules: { type: { case: "int32", value: { greaterThan: { case: "gt", value: 0 } } } } },
  { what: "string rules on an enum", field: { type: T.ENUM, typeName: COLOR }, rules: { type: { case: "string", value: { minLen: 1n } } } },
  { what: "enum rules on a message", field: { type: T.MESSAGE, typeName: INNER }, rules: { type: { case: "enum", value: { definedOnly: true } } } },
  { what: "a field CEL rule", field: { type: T.UINT32 }, rules: { cel: [{ id: "x", expression: "this > 1 ? '' : 'no'" }] } },
  { what: "string email", field: { type: T.STRING }, rules: { type: { case: "string", value: { wellKnown: { case: "email", value: true } } } } },
  { what: "a pattern with a dot", field: { type: T.STRING }, rules: { type: { case: "string", value: { pattern: "^a.b$" } } } },
  { what: "string len", field: { type: T.STRING }, rules: { type: { case: "string", value: { len: 3n } } } },
  { what: "unique doubles", field: { type: T.DOUBLE, repeated: true }, rules: { type: { case: "repeated", value: { unique: true } } } },
  { what: "unique bytes", field: { type: T.BYTES, repeated: true }, rules: { type: { case: "repeated", value: { unique: true } } } },
  { what: "unique messages", field: { type: T.MESSAGE, typeName: INNER, repeated: true }, rules: { type: { case: "repeated", value: { unique: true } } } },
  { what: "required items", field: { type: T.STRING, repeated: true }, rules: { type: { case: "repeated", value: { items: { required: true } } } } },
  { what: "key rules of int32 keys", field: { map: [T.INT32, T.STRING] }, rules: { type: { case: "map", value: { keys: { type: { case: "int32", value: { greaterThan: { case: "gt", value: 0 } } } } } } } },
  { what: "a timestamp rule other than mesh_time", field: { type: T.MESSAGE, typeName: ".google.protobuf.Timestamp" }, rules: { type: { case: "timestamp", value: { lessThan: { case: "ltNow", value: true } } } } },
  { what: "duration rules", field: { type: T.MESSAGE, typeName: ".google.protobuf.Duration" }, rules: { type: { case: "duration", value: { greaterThan: { case: "gt", value: { seconds: 1n } } } } } },
  { what: "rules of a wrapper", field: { type: T.MESSAGE, typeName: ".google.protobuf.UInt32Value" }, rules: { type: { case: "uint32", value: { greaterThan: { case: "gt", value: 1 } } } } },
  {
    what: "int64 rules of a JS_STRING int64",
    field: { type: T.INT64 },
    rules: { type: { case: "int64", value: { greaterThan: { case: "gt", value: 1n } } } },
    extra: (f) => {
      f.options ??= create(FieldOptionsSchema);
      f.options.jstype = FieldOptions_JSType.JS_STRING;
    },
  },
  {
    what: "a proto3 optional field",
    field: { type: T.UINT32 },
    rules: { type: { case: "uint32", value: { lessThan: { case: "lt", value: 5 } } } },
    extra: (f, m) => {
      m.oneofDecl.push(create(OneofDescriptorProtoSchema, { name: "_v" }));
      f.oneofIndex = m.oneofDecl.length - 1;
      f.proto3Optional = true;
    },
  },
  {
    what: "a oneof member",
    field: { type: T.STRING },
    rules: {},
    extra: (f, m) => {
      m.oneofDecl.push(create(OneofDescriptorProtoSchema, { name: "choice" }));
      f.oneofIndex = m.oneofDecl.length - 1;
    },
  },
  {
    what: "a required oneof",
    field: { type: T.STRING },
    rules: {},
    extra: (f, m) => {
      const options = create(OneofOptionsSchema);
      setExtension(options, oneofRulesExt, create(OneofRulesSchema, { required: true }));
      m.oneofDecl.push(create(OneofDescriptorProtoSchema, { name: "choice", options }));
      f.oneofIndex = m.oneofDecl.length - 1;
    },
  },
  {
    what: "a message CEL rule",
    field: { type: T.UINT32 },
    rules: {},
    extra: (_, m) => {
      m.options = create(MessageOptionsSchema);
      setExtension(m.options, messageRulesExt, create(MessageRulesSchema, { cel: [{ id: "x", expression: "this.v > 1" }] }));
    },
  },
  {
    what: "a message oneof rule",
    field: { type: T.UINT32 },
    rules: {},
    extra: (_, m) => {
      m.options = create(MessageOptionsSchema);
      setExtension(m.options, messageRulesExt, create(MessageRulesSchema, { oneof: [{ fields: ["v"], required: true }] }));
    },
  },
];

function fieldProto(spec: FieldSpec, rules: RulesInit, messageName: string, nested: DescriptorProto[]): FieldDescriptorProto {
  const options = create(FieldOptionsSchema);
  setExtension(options, fieldRulesExt, create(FieldRulesSchema, rules));
  if ("map" in spec) {
    const [key, value, valueTypeName] = spec.map;
    nested.push(
      create(DescriptorProtoSchema, {
        name: "VEntry",
        field: [
          { name: "key", number: 1, label: Label.OPTIONAL, type: key, jsonName: "key" },
          { name: "value", number: 2, label: Label.OPTIONAL, type: value, jsonName: "value", ...(valueTypeName ? { typeName: valueTypeName } : {}) },
        ],
        options: { mapEntry: true },
      }),
    );
    return create(FieldDescriptorProtoSchema, { name: "v", number: 1, label: Label.REPEATED, type: T.MESSAGE, typeName: `.${PKG}.${messageName}.VEntry`, jsonName: "v", options });
  }
  return create(FieldDescriptorProtoSchema, {
    name: "v",
    number: 1,
    label: spec.repeated ? Label.REPEATED : Label.OPTIONAL,
    type: spec.type,
    jsonName: "v",
    ...(spec.typeName ? { typeName: spec.typeName } : {}),
    options,
  });
}

/** One message per case (`Case0`, `Declined0`...), each with its field `v`, in one file. */
function buildMessages(): { cases: DescMessage[]; declined: DescMessage[] } {
  const messages: DescriptorProto[] = [];
  const add = (name: string, spec: FieldSpec, rules: RulesInit, extra?: (f: FieldDescriptorProto, m: DescriptorProto) => void) => {
    const nested: DescriptorProto[] = [];
    const f = fieldProto(spec, rules, name, nested);
    const m = create(DescriptorProtoSchema, { name, field: [f], nestedType: nested });
    extra?.(f, m);
    messages.push(m);
  };
  CASES.forEach((c, i) => add(`Case${i}`, c.field, c.rules));
  DECLINED.forEach((c, i) => add(`Declined${i}`, c.field, c.rules, c.extra));
  const inner = create(FieldOptionsSchema);
  setExtension(inner, fieldRulesExt, create(FieldRulesSchema, { type: { case: "string", value: { pattern: "^[A-Z]{2}$" } } }));
  messages.push(create(DescriptorProtoSchema, { name: "Inner", field: [{ name: "code", number: 1, label: Label.OPTIONAL, type: T.STRING, jsonName: "code", options: inner }] }));
  const file = create(FileDescriptorProtoSchema, {
    name: "precheck/test/v1/rules.proto",
    package: PKG,
    syntax: "proto3",
    dependency: [file_buf_validate_validate, file_google_protobuf_timestamp, file_google_protobuf_duration, file_google_protobuf_wrappers].map((f) => `${f.name}.proto`),
    enumType: [
      {
        name: "Color",
        value: [
          { name: "COLOR_UNSPECIFIED", number: 0 },
          { name: "COLOR_RED", number: 1 },
          { name: "COLOR_GREEN", number: 2 },
          { name: "COLOR_BLUE", number: 5 },
        ],
      },
    ],
    messageType: messages,
  });
  const deps = new Map([file_buf_validate_validate, file_google_protobuf_timestamp, file_google_protobuf_duration, file_google_protobuf_wrappers].map((f) => [`${f.name}.proto`, f]));
  const registry = createFileRegistry(file, (name) => deps.get(name));
  const get = (name: string): DescMessage => {
    const desc = registry.getMessage(`${PKG}.${name}`);
    assert.ok(desc, name);
    return desc;
  };
  return { cases: CASES.map((_, i) => get(`Case${i}`)), declined: DECLINED.map((_, i) => get(`Declined${i}`)) };
}

const show = (v: unknown): string => JSON.stringify(v, (_, x: unknown) => (typeof x === "bigint" ? `${x}n` : typeof x === "number" && !Number.isFinite(x) ? String(x) : Object.is(x, -0) ? "-0" : x));

describe("compilePrecheck rule by rule", () => {
  const validator = createMeshValidator();
  const { cases, declined } = buildMessages();

  for (const [i, c] of CASES.entries()) {
    it(`${c.what}: valid exactly when protovalidate says so`, () => {
      const desc = cases[i]!;
      const precheck = compilePrecheck(desc);
      assert.ok(precheck, `${c.what} compiles`);
      const verdicts = new Set<string>();
      const judge = (v: unknown): boolean => {
        const message = create(desc, v === undefined ? {} : { v } as never);
        const verdict = validator.validate(desc, message);
        const quick = precheck(message);
        verdicts.add(verdict.kind);
        if (quick) assert.equal(verdict.kind, "valid", `precheck passed ${show(v)}: ${verdict.error?.message ?? ""}`);
        if (verdict.kind === "valid" && isPlainValue(v)) assert.equal(quick, true, `precheck failed valid ${show(v)}`);
        return true;
      };
      const spec = c.field;
      const edges = "type" in spec && !spec.repeated ? c.edges.filter((v) => inRange(spec.type, v)) : c.edges;
      edges.forEach(judge);
      assert.ok(verdicts.has("valid") && verdicts.has("invalid") !== (c.admitsAll ?? false), `${c.what}: edges cover valid and invalid values (${[...verdicts].join(", ")})`);
      fc.assert(fc.property(c.random ?? randomFor(spec), judge), { numRuns: 300 });
    });
  }

  it("declines rules outside the subset, so protovalidate judges those messages", () => {
    const compiled = DECLINED.filter((_, i) => compilePrecheck(declined[i]!) !== undefined).map((c) => c.what);
    assert.deepEqual(compiled, []);
  });
});
