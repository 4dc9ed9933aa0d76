import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import {
  clone,
  create,
  ScalarType,
  type DescField,
  type DescMessage,
  type Message,
} from "@bufbuild/protobuf";
import { pathToString } from "@bufbuild/protobuf/reflect";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Scope } from "@logistics/shared/auth";
import { Health, HealthCheckResponse_ServingStatus } from "@logistics/shared/gen/grpc/health/v1/health_pb.js";
import { RejectReason, ScanOutcome, type ScanAck } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { ScanSchema } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { violationPaths } from "@logistics/shared/testing";
import { createMeshValidator } from "@logistics/shared/validation";
import { startE2eMesh, type E2eMesh } from "./e2e-mesh.js";
import { callOnce, MESH_SERVICES } from "./call-once.js";
import { extremeMessage } from "./extreme-values.js";


type Timestamp = { seconds: bigint; nanos: number };
const ts = (seconds: bigint, nanos = 0): Timestamp => ({ seconds, nanos });

/** Extremes for each kind of number, and for timestamps (the ends of every range that matters). */
export const NUMBER_EXTREMES: Record<string, unknown[]> = {
  double: [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, Number.MAX_VALUE, -Number.MAX_VALUE, Number.MIN_VALUE, 1e15],
  uint32: [0, 1, 4_294_967_295],
  int32: [-2_147_483_648, -1, 2_147_483_647],
  uint64: [0n, 18_446_744_073_709_551_615n],
  int64: [-9_223_372_036_854_775_808n, 9_223_372_036_854_775_807n],
  enum: [-1, 99, 2_147_483_647],
  timestamp: [
    ts(-9_223_372_036_854_775_808n),
    ts(-62_135_596_801n),
    ts(-62_135_596_800n), // 0001-01-01
    ts(0n),
    ts(946_684_799n, 999_999_999), // just before the mesh's range
    ts(946_684_800n), // 2000-01-01
    ts(4_102_444_799n, 999_999_999),
    ts(4_102_444_800n), // 2100-01-01
    ts(253_402_300_799n), // 9999-12-31T23:59:59
    ts(253_402_300_800n),
    ts(10n ** 15n),
    ts(9_223_372_036_854_775_807n),
    ts(1_800_000_000n, -1),
    ts(1_800_000_000n, 1_000_000_000),
    ts(1_800_000_000n, 2_147_483_647),
  ],
};

/** The kind of extreme a field takes, or undefined for fields that are not numbers or times. */
function extremeKind(f: DescField): string | undefined {
  if (f.fieldKind === "enum" || (f.fieldKind === "list" && f.listKind === "enum")) return "enum";
  const scalar = f.fieldKind === "scalar" ? f.scalar : f.fieldKind === "list" && f.listKind === "scalar" ? f.scalar : undefined;
  switch (scalar) {
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return "double";
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return "uint32";
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return "int32";
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return "uint64";
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return "int64";
  }
  const message = f.fieldKind === "message" ? f.message : f.fieldKind === "list" && f.listKind === "message" ? f.message : undefined;
  return message?.typeName === "google.protobuf.Timestamp" ? "timestamp" : undefined;
}

/** One place a number or time can go in a request: proto-name path and the field. */
export interface NumberSite {
  readonly path: string;
  readonly steps: ReadonlyArray<{ field: DescField; index?: number }>;
  readonly kind: string;
}

/** Every number and timestamp field reachable in `desc` (first element of lists), from the descriptors. */
export function numberSites(desc: DescMessage, prefix: NumberSite["steps"] = [], seen: ReadonlySet<string> = new Set()): NumberSite[] {
  if (seen.has(desc.typeName) || prefix.length > 5) return [];
  const out: NumberSite[] = [];
  for (const field of desc.fields) {
    const list = field.fieldKind === "list";
    const steps = [...prefix, list ? { field, index: 0 } : { field }];
    const kind = extremeKind(field);
    if (kind) {
      out.push({ path: steps.map((s) => `${s.field.name}${s.index !== undefined ? `[${s.index}]` : ""}`).join("."), steps, kind });
      continue;
    }
    const message = field.fieldKind === "message" ? field.message : field.fieldKind === "list" && field.listKind === "message" ? field.message : undefined;
    if (message && !message.typeName.startsWith("google.protobuf.")) out.push(...numberSites(message, steps, new Set([...seen, desc.typeName])));
  }
  return out;
}

/** A copy of `base` with `value` at `site` (parents created as needed). */
export function withValue<M extends Message>(schema: DescMessage, base: M, site: NumberSite, value: unknown): M {
  const copy = clone(schema, base) as unknown as Record<string, unknown>;
  let target: Record<string, unknown> = copy;
  site.steps.forEach((step, i) => {
    const last = i === site.steps.length - 1;
    const f = step.field;
    const holder = f.oneof ? (target[f.oneof.localName] as { case?: string; value?: unknown }) : undefined;
    const read = () => (holder ? (holder.case === f.localName ? holder.value : undefined) : target[f.localName]);
    const write = (v: unknown) => {
      if (f.oneof) target[f.oneof.localName] = { case: f.localName, value: v };
      else target[f.localName] = v;
    };
    const fill = (v: unknown) =>
      last
        ? f.fieldKind === "message" || (f.fieldKind === "list" && f.listKind === "message")
          ? create(f.message!, value as never)
          : value
        : (v ?? create(f.message!));
    if (step.index !== undefined) {
      const list = [...((read() as unknown[] | undefined) ?? [])];
      list[step.index] = fill(list[step.index]);
      write(list);
      target = list[step.index] as Record<string, unknown>;
    } else {
      const next = fill(read());
      write(next);
      target = next as Record<string, unknown>;
    }
  });
  return copy as unknown as M;
}

/**
 * Every RPC of the mesh, every number and timestamp field of its request (found from the
 * descriptors), every extreme: the answer is never Internal or Unknown, a value the contract's
 * rules refuse is InvalidArgument naming that field (or, for a scan, a REJECTED / INVALID ack
 * naming it), and every service stays SERVING.
 */
describe("every RPC's numbers and times at their extremes", { timeout: 300_000 }, () => {
  let mesh: E2eMesh;
  let headers: Record<string, string>;
  const validator = createMeshValidator();

  beforeAll(async () => {
    mesh = await startE2eMesh();
    headers = { authorization: `Bearer ${await mesh.token([Scope.Admin])}` };
  }, 120_000);
  afterAll(async () => {
    await mesh?.close();
  });

  for (const [service, name] of MESH_SERVICES) {
    for (const method of service.methods) {
      const sites = numberSites(method.input);
      if (sites.length === 0) continue;
      it(`${service.name}.${method.name}: ${sites.map((s) => s.path).join(", ")}`, async () => {
        const client = createClient(service, createGrpcTransport({ baseUrl: mesh.get(name).url }));
        const base = extremeMessage(method.input, { extreme: "max", maxItems: 1 });
        const failures: string[] = [];
        for (const site of sites) {
          for (const value of NUMBER_EXTREMES[site.kind]!) {
            const req = withValue(method.input, base, site, value);
            const what = `${site.path} = ${JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : v))}`;
            const res = await callOnce(client, method, req, headers);
            if (res.code === Code.Internal || res.code === Code.Unknown) {
              failures.push(`${what}: ${Code[res.code]} ${res.error?.rawMessage}`);
              continue;
            }
            // What the contract's rules say about the value at this site.
            const scanSite = /^scans\[0\]\./.exec(site.path);
            const checked = scanSite ? ScanSchema : method.input;
            const checkedPath = scanSite ? site.path.slice(scanSite[0].length) : site.path;
            const subject = scanSite ? (req as unknown as { scans: Message[] }).scans[0]! : req;
            const verdict = validator.validate(checked, subject as never);
            const refused = verdict.kind === "invalid" && verdict.violations.some((v) => pathToString(v.field) === checkedPath);
            if (!refused) continue;
            if (scanSite) {
              const acks = (res.output ?? []).flatMap((o) => (o as unknown as { acks: ScanAck[] }).acks ?? []);
              const ack = acks[0];
              if (!ack || ack.outcome !== ScanOutcome.REJECTED || ack.rejectReason !== RejectReason.INVALID || !ack.violations.some((v) => v.field === checkedPath)) {
                failures.push(`${what}: expected a REJECTED/INVALID ack naming ${checkedPath}, got ${res.code ? Code[res.code] : JSON.stringify(ack?.violations.map((v) => v.field))}`);
              }
            } else if (res.code !== Code.InvalidArgument || !violationPaths(res.error!).includes(site.path)) {
              failures.push(`${what}: expected InvalidArgument naming ${site.path}, got ${res.code ? Code[res.code] : "OK"} ${res.error?.rawMessage ?? ""}`);
            }
          }
        }
        assert.deepEqual(failures, []);
        const health = createClient(Health, createGrpcTransport({ baseUrl: mesh.get(name).url }));
        assert.equal((await health.check({})).status, HealthCheckResponse_ServingStatus.SERVING);
      });
    }
  }
});
