import assert from "node:assert/strict";
import { describe, it } from "vitest";
import {
  clearField,
  clone,
  create,
  createFileRegistry,
  getExtension,
  getOption,
  hasExtension,
  setExtension,
  type DescField,
  type DescMessage,
  type FileRegistry,
} from "@bufbuild/protobuf";
import { pathToString } from "@bufbuild/protobuf/reflect";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type DescriptorProto } from "@bufbuild/protobuf/wkt";
import { createValidator, type ValidationResult, type Violation } from "@bufbuild/protovalidate";
import {
  field as fieldRulesExt,
  Ignore,
  predefined,
  StringRulesSchema,
  type FieldRules,
  type StringRules,
} from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { file_logistics_common_v1_validation, mesh_time, text } from "../gen/logistics/common/v1/validation_pb.js";
import { allMessages, MESH_FILES, withDependencies } from "../testing/mesh-contracts.js";
import { FREE_TEXT_PATTERN, isFreeText } from "./free-text.js";
import { createMeshValidator } from "./mesh-validator.js";

/**
 * The free-text rule used to be the predefined `logistics.common.v1.text` on every free-text
 * field, and `logistics.common.v1.mesh_time` used to compare with `timestamp('...')` literals;
 * both cost a CEL evaluation (and `text` dragged the field's length rules into CEL). Free text is
 * now the standard pattern (evaluated natively) and mesh_time looks at whole seconds first. This
 * pins that nothing else changed: the contracts as they were are rebuilt from today's descriptors
 * (the free-text pattern turned back into the `text` rule, the old mesh_time expression), and
 * both validators judge a corpus of hostile values in every field that carries either rule, in
 * every message of the mesh. Verdicts and violations must agree; only a free-text violation reads
 * differently (rule `string.pattern` with its pattern instead of `string.text`).
 */

/** The mesh_time expression before it compared whole seconds first. */
const OLD_MESH_TIME =
  "!rule ? '' : this < timestamp('2000-01-01T00:00:00Z') || this >= timestamp('2100-01-01T00:00:00Z') ? 'must be from 2000-01-01T00:00:00Z to before 2100-01-01T00:00:00Z' : this != this + duration('0s') ? 'nanos must be from 0 to 999,999,999' : ''";

/** Today's contracts with free text as the `text` rule again and the old mesh_time expression. */
function contractsAsBefore(): FileRegistry {
  const files = withDependencies(MESH_FILES).map((f) => {
    const proto = clone(FileDescriptorProtoSchema, f.proto);
    if (f === file_logistics_common_v1_validation) {
      const ext = proto.extension.find((e) => e.name === mesh_time.name);
      assert.ok(ext?.options);
      const rules = getExtension(ext.options, predefined);
      assert.equal(rules.cel.length, 1);
      rules.cel[0]!.expression = OLD_MESH_TIME;
      setExtension(ext.options, predefined, rules);
    } else if (f.name.startsWith("logistics/")) {
      proto.messageType.forEach(revertFreeText);
    }
    return proto;
  });
  return createFileRegistry(create(FileDescriptorSetSchema, { file: files }));
}

function revertFreeText(message: DescriptorProto): void {
  message.nestedType.forEach(revertFreeText);
  for (const f of message.field) {
    if (!f.options || !hasExtension(f.options, fieldRulesExt)) continue;
    const rules = getExtension(f.options, fieldRulesExt);
    const fix = (r: FieldRules | undefined): void => {
      if (r?.type.case !== "string" || r.type.value.pattern !== FREE_TEXT_PATTERN) return;
      clearField(r.type.value, StringRulesSchema.field.pattern);
      setExtension(r.type.value, text, true);
    };
    fix(rules);
    if (rules.type.case === "repeated") fix(rules.type.value.items);
    if (rules.type.case === "map") {
      fix(rules.type.value.keys);
      fix(rules.type.value.values);
    }
    setExtension(f.options, fieldRulesExt, rules);
  }
}

/** A field carrying one of the rules, reached from a message through singular, list or map fields. */
interface Site {
  readonly path: readonly DescField[];
  readonly kind: "text" | "time";
  /** For text in a map: key or value. */
  readonly part: "value" | "key";
  readonly rules: StringRules | undefined;
  /** On a path the validator skips (`ignore: IGNORE_ALWAYS`, e.g. the scans of a batch request, judged one by one). */
  readonly ignored: boolean;
}

function sites(desc: DescMessage, prefix: readonly DescField[] = [], seen: ReadonlySet<string> = new Set(), skipped = false): Site[] {
  if (seen.has(desc.typeName) || prefix.length > 4) return [];
  const inner = new Set(seen).add(desc.typeName);
  const out: Site[] = [];
  for (const f of desc.fields) {
    const path = [...prefix, f];
    const rules = getOption(f, fieldRulesExt);
    const ignored =
      skipped || rules.ignore === Ignore.ALWAYS || (rules.type.case === "repeated" && rules.type.value.items?.ignore === Ignore.ALWAYS);
    const str = (r: FieldRules | undefined): StringRules | undefined => (r?.type.case === "string" && isFreeText(r.type.value) ? r.type.value : undefined);
    if ((f.fieldKind === "scalar" && str(rules)) || (f.fieldKind === "list" && rules.type.case === "repeated" && str(rules.type.value.items))) {
      out.push({ path, kind: "text", part: "value", rules: str(rules) ?? (rules.type.case === "repeated" ? str(rules.type.value.items) : undefined), ignored });
    }
    if (f.fieldKind === "map" && rules.type.case === "map") {
      const keys = str(rules.type.value.keys);
      const values = str(rules.type.value.values);
      if (keys) out.push({ path, kind: "text", part: "key", rules: keys, ignored });
      if (values) out.push({ path, kind: "text", part: "value", rules: values, ignored });
    }
    const message = f.fieldKind === "message" || (f.fieldKind === "list" && f.listKind === "message") ? f.message : undefined;
    if (message?.typeName === "google.protobuf.Timestamp") {
      if (rules.type.case === "timestamp" && hasExtension(rules.type.value, mesh_time)) out.push({ path, kind: "time", part: "value", rules: undefined, ignored });
    } else if (message && !message.typeName.startsWith("google.protobuf.")) {
      out.push(...sites(message, path, inner, ignored));
    }
  }
  return out;
}

/** The init object of a message with `value` at the site (everything else left at defaults). */
function initAt(site: Site, value: unknown): Record<string, unknown> {
  let v: unknown = value;
  for (let i = site.path.length - 1; i >= 0; i--) {
    const f = site.path[i]!;
    if (f.fieldKind === "list") v = [v];
    if (f.fieldKind === "map") v = site.part === "key" ? { [v as string]: "" } : { k: v };
    v = f.oneof ? { [f.oneof.localName]: { case: f.localName, value: v } } : { [f.localName]: v };
  }
  return v as Record<string, unknown>;
}

const FREE_TEXT_VIOLATION = "free text: NUL or unpaired surrogate";

/** A violation as clients see it; the free-text rule's two forms are one. */
function asClientsSeeIt(v: Violation): string {
  const freeText = v.ruleId === "string.text" || (v.ruleId === "string.pattern" && v.message.includes(FREE_TEXT_PATTERN));
  const rule = freeText ? FREE_TEXT_VIOLATION : `${v.ruleId} ${pathToString(v.rule)}: ${v.message}`;
  return `${pathToString(v.field)}${v.forKey ? " (key)" : ""} ${rule}`;
}

/** Strings every free-text field must treat alike, with whether the free-text rule admits them. */
const HOSTILE_TEXT: ReadonlyArray<readonly [string, boolean]> = [
  ["", true],
  ["plain", true],
  ["\u0000", false],
  ["a\u0000b", false],
  ["trailing NUL\u0000", false],
  ["\uD800", false],
  ["\uDBFF", false],
  ["\uDC00", false],
  ["\uDFFF", false],
  ["x\uD800y", false],
  ["low then high \uDC00\uD800", false],
  ["high at end \uD83D", false],
  ["\uD83D\uDCE6", true],
  ["emoji 📦 ok", true],
  ["\u{10FFFF}", true],
  ["\uFFFD\uFFFE\uFFFF", true],
  ["\u0001\u001f\r\n\u2028", true],
  ["e\u0301 \u202e \ufeff", true],
];

/** Strings at a field's length bounds, made of awkward characters. */
function boundText(r: StringRules | undefined): Array<readonly [string, boolean | undefined]> {
  const out: Array<readonly [string, boolean | undefined]> = [];
  const max = r?.maxLen ? Number(r.maxLen) : undefined;
  const min = r?.minLen ? Number(r.minLen) : 0;
  if (max !== undefined) {
    out.push(["a".repeat(max), true], ["a".repeat(max + 1), true]);
    // Code points, not UTF-16 units: max emoji are within max_len.
    out.push(["😀".repeat(max), true], ["😀".repeat(max + 1), true]);
    out.push(["😀".repeat(max - 1) + "\uD800", false], ["a".repeat(max) + "\u0000", false]);
  }
  if (min > 1) out.push(["\u0000".repeat(min - 1), false], ["\uDC00".repeat(min), false]);
  return out;
}

/** Timestamps around the ends of the mesh's range and nanos out of range, with whether mesh_time admits them. */
const HOSTILE_TIME: ReadonlyArray<readonly [string, { seconds: bigint; nanos: number }, boolean]> = [
  ["1999-12-31T23:59:59.999999999Z", { seconds: 946_684_799n, nanos: 999_999_999 }, false],
  ["2000-01-01T00:00:00Z", { seconds: 946_684_800n, nanos: 0 }, true],
  ["2000-01-01T00:00:00.000000001Z", { seconds: 946_684_800n, nanos: 1 }, true],
  ["2000-01-01T00:00:01Z", { seconds: 946_684_801n, nanos: 0 }, true],
  ["2026-01-15T12:00:00.5Z", { seconds: 1_768_478_400n, nanos: 500_000_000 }, true],
  ["2099-12-31T23:59:59Z", { seconds: 4_102_444_799n, nanos: 0 }, true],
  ["2099-12-31T23:59:59.999999999Z", { seconds: 4_102_444_799n, nanos: 999_999_999 }, true],
  ["2100-01-01T00:00:00Z", { seconds: 4_102_444_800n, nanos: 0 }, false],
  ["nanos -1", { seconds: 1_768_478_400n, nanos: -1 }, false],
  ["nanos 1e9", { seconds: 1_768_478_400n, nanos: 1_000_000_000 }, false],
  ["nanos -2^31", { seconds: 1_768_478_400n, nanos: -2_147_483_648 }, false],
  ["nanos 2^31-1", { seconds: 1_768_478_400n, nanos: 2_147_483_647 }, false],
  ["first second, nanos -1", { seconds: 946_684_800n, nanos: -1 }, false],
  ["last second before the range, nanos 1e9", { seconds: 946_684_799n, nanos: 1_000_000_000 }, false],
  ["last second, nanos 1e9", { seconds: 4_102_444_799n, nanos: 1_000_000_000 }, false],
  ["end of the range, nanos -1", { seconds: 4_102_444_800n, nanos: -1 }, false],
  ["epoch", { seconds: 0n, nanos: 0 }, false],
  ["year 1", { seconds: -62_135_596_800n, nanos: 0 }, false],
  ["year 9999", { seconds: 253_402_300_799n, nanos: 0 }, false],
  ["seconds 1e15", { seconds: 10n ** 15n, nanos: 0 }, false],
  ["seconds -1e15, nanos -1", { seconds: -(10n ** 15n), nanos: -1 }, false],
  ["seconds int64 max", { seconds: 9_223_372_036_854_775_807n, nanos: 0 }, false],
  ["seconds int64 min, nanos -1", { seconds: -9_223_372_036_854_775_808n, nanos: -1 }, false],
];

describe("free text as a standard pattern and mesh_time by whole seconds", () => {
  const now = createMeshValidator();
  const contractsBefore = contractsAsBefore();
  const before = createValidator({ registry: contractsBefore });
  const messages = withDependencies(MESH_FILES)
    .filter((f) => f.name.startsWith("logistics/"))
    .flatMap((f) => allMessages(f.messages));

  it("finds the rules where the contracts use them", () => {
    const found = messages.flatMap((m) => sites(m).map((s) => `${m.typeName}.${s.path.map((f) => f.name).join(".")}${s.part === "key" ? "[key]" : ""}`));
    for (const expected of [
      "logistics.common.v1.Scan.note",
      "logistics.common.v1.Scan.attributes[key]",
      "logistics.common.v1.Scan.attributes",
      "logistics.common.v1.Scan.event_time",
      "logistics.common.v1.Scan.raw_status.code",
      "logistics.ingest.v1.CreateShipmentRequest.origin.city",
      "logistics.ingest.v1.CreateShipmentRequest.ready_time",
      "logistics.ingest.v1.StreamScansRequest.traceparent",
      "logistics.notification.v1.SubscribeRequest.webhook_url",
    ]) {
      assert.ok(found.includes(expected), `${expected} in ${found.join(", ")}`);
    }
  });

  it("every message judges hostile free text and timestamps as before, with the same violations", () => {
    let cases = 0;
    for (const desc of messages) {
      const old: DescMessage | undefined = contractsBefore.getMessage(desc.typeName);
      if (!old) throw new Error(`${desc.typeName} is missing from the contracts as they were`);
      for (const site of sites(desc)) {
        const corpus: Array<readonly [string, unknown, boolean | undefined]> =
          site.kind === "time"
            ? HOSTILE_TIME.map(([what, t, ok]) => [what, t, ok] as const)
            : [...HOSTILE_TEXT, ...boundText(site.rules)].map(([s, ok]) => [JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…(${s.length})` : s), s, ok] as const);
        for (const [what, value, admitted] of corpus) {
          const init = initAt(site, value);
          const a: ValidationResult = now.validate(desc, create(desc, init as never));
          const b: ValidationResult = before.validate(old, create(old, init as never));
          const where = `${desc.typeName} ${site.path.map((f) => f.name).join(".")}${site.part === "key" ? "[key]" : ""} = ${what}`;
          assert.equal(a.kind, b.kind, `${where}: ${a.kind === "error" ? a.error.message : ""} ${b.kind === "error" ? b.error.message : ""}`);
          const va: string[] = a.kind === "invalid" ? a.violations.map(asClientsSeeIt) : [];
          const vb: string[] = b.kind === "invalid" ? b.violations.map(asClientsSeeIt) : [];
          assert.deepEqual(va, vb, where);
          if (admitted !== undefined && !site.ignored) {
            // The rule itself: a violation of it at this site exactly when the value is not admitted.
            const ruleHit = va.some((v) => v.includes(site.kind === "time" ? "timestamp.mesh_time" : FREE_TEXT_VIOLATION));
            assert.equal(ruleHit, !admitted, `${where}: ${va.join("; ")}`);
          }
          cases++;
        }
      }
    }
    assert.ok(cases > 500, `${cases} cases`);
  });
});
