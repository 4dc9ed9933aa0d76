import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { getOption, hasExtension, ScalarType, type DescField, type DescMessage, type DescService } from "@bufbuild/protobuf";
import { field as fieldRules, type FieldRules } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { mesh_time, text } from "../gen/logistics/common/v1/validation_pb.js";
import { IngestService } from "../gen/logistics/ingest/v1/ingest_pb.js";
import { NotificationService } from "../gen/logistics/notification/v1/notification_pb.js";
import { RoutingService } from "../gen/logistics/routing/v1/routing_pb.js";
import { TrackingService } from "../gen/logistics/tracking/v1/tracking_pb.js";
import { isFreeText } from "./free-text.js";

const SERVICES: readonly DescService[] = [IngestService, RoutingService, TrackingService, NotificationService];

/**
 * Why a string's rules do not bound it (or undefined): a pattern, a list of values, or a length
 * cap with the free-text rule (the free-text pattern, or logistics.common.v1.text).
 */
function stringProblem(rules: FieldRules | undefined): string | undefined {
  const s = rules?.type.case === "string" ? rules.type.value : undefined;
  if (!s) return "has no string rules";
  // The predefined rule sends every rule of the field through CEL: only where the pattern is taken.
  if (hasExtension(s, text) && !s.pattern) return "uses (logistics.common.v1.text) instead of the free-text pattern";
  if (isFreeText(s)) return s.maxLen || s.len ? undefined : "has no max_len";
  if (s.pattern || s.in.length > 0 || s.const) return undefined;
  if (!s.maxLen && !s.len) return "has no max_len";
  return "is free text without the free-text pattern or (logistics.common.v1.text)";
}

/** Every field of `desc` reachable from a request, with what is missing to bound it. */
function problems(desc: DescMessage, path: string, seen: Set<string>, visited: string[]): string[] {
  if (seen.has(desc.typeName)) return [];
  seen.add(desc.typeName);
  const out: string[] = [];
  for (const f of desc.fields) {
    visited.push(`${path}.${f.name}`);
    const p = `${path}.${f.name}`;
    const rules = getOption(f, fieldRules);
    const itemRules = f.fieldKind === "list" && rules.type.case === "repeated" ? rules.type.value.items : undefined;
    if (f.fieldKind === "list" && !(rules.type.case === "repeated" && rules.type.value.maxItems)) out.push(`${p} has no max_items`);
    if (f.fieldKind === "map") {
      const m = rules.type.case === "map" ? rules.type.value : undefined;
      if (!m?.maxPairs) out.push(`${p} has no max_pairs`);
      const k = stringProblem(m?.keys);
      if (f.mapKey === ScalarType.STRING && k) out.push(`${p} key ${k}`);
      const v = stringProblem(m?.values);
      if (f.mapKind === "scalar" && f.scalar === ScalarType.STRING && v) out.push(`${p} value ${v}`);
    }
    const scalar = scalarOf(f);
    // Strings in a list whose items are validated one by one by the handler (IGNORE_ALWAYS) are
    // scans: their own message rules apply.
    if (scalar === ScalarType.STRING) {
      const why = stringProblem(f.fieldKind === "list" ? itemRules : rules);
      if (why) out.push(`${p} ${why}`);
    }
    const message = f.fieldKind === "message" ? f.message : f.fieldKind === "list" && f.listKind === "message" ? f.message : undefined;
    if (message?.typeName === "google.protobuf.Timestamp") {
      const t = rules.type.case === "timestamp" ? rules.type.value : undefined;
      if (!t || !hasExtension(t, mesh_time)) out.push(`${p} has no (logistics.common.v1.mesh_time)`);
    } else if (message && !message.typeName.startsWith("google.protobuf.")) {
      out.push(...problems(message, p, seen, visited));
    }
  }
  return out;
}

function scalarOf(f: DescField): ScalarType | undefined {
  if (f.fieldKind === "scalar") return f.scalar;
  if (f.fieldKind === "list" && f.listKind === "scalar") return f.scalar;
  return undefined;
}

/**
 * The contracts' promise that what the edge accepts every store can hold holds only if every
 * request field is bounded. This walks every request of every service from the descriptors, so
 * an RPC or field added without rules fails here, naming what is missing.
 */
describe("the contracts bound every value a request can carry", () => {
  for (const service of SERVICES) {
    it(`${service.typeName}: every string is patterned or capped free text, every list and map capped, every timestamp in the mesh's range`, () => {
      const visited: string[] = [];
      const found = service.methods.flatMap((m) => problems(m.input, `${m.name}(${m.input.name})`, new Set(), visited));
      assert.deepEqual(found, []);
      assert.ok(visited.length >= service.methods.length, `walked ${visited.length} fields`);
    });
  }
});
