import http from "node:http";
import { gunzipSync } from "node:zlib";
import type { AddressInfo } from "node:net";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

/*
 * An independent OTLP/HTTP trace receiver for tests: node:http on 127.0.0.1 taking
 * `POST /v1/traces` as OTLP/JSON or OTLP/protobuf (gzip or not), decoding both into one plain
 * shape without any OpenTelemetry SDK code, so what a test asserts is what a collector gets.
 * The protobuf decoder reads the wire format of opentelemetry/proto/trace/v1/trace.proto
 * (field numbers below) with protobuf-es's BinaryReader.
 */

/** OTLP span kinds (`Span.SpanKind`). */
export const OtlpSpanKind = Object.freeze({ INTERNAL: 1, SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 });

/** An attribute value as OTLP carries it (int64 as number when safe, else as a decimal string). */
export type OtlpValue = string | number | boolean | OtlpValue[] | undefined;

/** A link of a received span. */
export interface OtlpLink {
  readonly traceId: string;
  readonly spanId: string;
  readonly attributes: Readonly<Record<string, OtlpValue>>;
}

/** One received span, with its resource and scope. */
export interface OtlpSpan {
  /** 32 lowercase hex digits. */
  readonly traceId: string;
  /** 16 lowercase hex digits. */
  readonly spanId: string;
  /** Empty for a root span. */
  readonly parentSpanId: string;
  readonly name: string;
  /** {@link OtlpSpanKind}. */
  readonly kind: number;
  readonly attributes: Readonly<Record<string, OtlpValue>>;
  readonly links: readonly OtlpLink[];
  /** 0 unset, 1 ok, 2 error. */
  readonly statusCode: number;
  readonly resource: Readonly<Record<string, OtlpValue>>;
  readonly scope: string;
  /** How it arrived. */
  readonly encoding: "json" | "protobuf";
}

/** One export request as it arrived, decoded or not. */
export interface OtlpRequest {
  readonly method: string;
  /** Path and query, e.g. `/v1/traces`. */
  readonly path: string;
  readonly contentType: string;
}

/** Options of {@link startOtlpReceiver}. */
export interface OtlpReceiverOptions {
  /**
   * Answer every request with this non-2xx HTTP status and decode nothing: a collector that
   * refuses spans. Default: decode and answer 200.
   */
  readonly refuseWith?: number;
}

/** A running receiver. */
export interface OtlpReceiver {
  /** Base URL to give as `OTEL_EXPORTER_OTLP_ENDPOINT`. */
  readonly url: string;
  /** Every span received so far, in arrival order. */
  readonly spans: readonly OtlpSpan[];
  /** Export requests received, by encoding. */
  readonly requests: { json: number; protobuf: number };
  /** Every request received (refused ones included), in arrival order. */
  readonly received: readonly OtlpRequest[];
  /** Requests that could not be decoded (answered 400), with the reason. */
  readonly rejected: readonly string[];
  close(): Promise<void>;
}

/**
 * Starts an OTLP/HTTP receiver on a free loopback port. It takes exports POSTed to any path ending
 * in `/v1/traces` (an endpoint configured with a path of its own included).
 */
export async function startOtlpReceiver(opts: OtlpReceiverOptions = {}): Promise<OtlpReceiver> {
  const spans: OtlpSpan[] = [];
  const requests = { json: 0, protobuf: 0 };
  const received: OtlpRequest[] = [];
  const rejected: string[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const type = String(req.headers["content-type"] ?? "");
      received.push({ method: req.method ?? "", path: req.url ?? "", contentType: type });
      try {
        if (req.method !== "POST" || !(req.url ?? "").split("?")[0]!.endsWith("/v1/traces")) {
          res.writeHead(404).end();
          return;
        }
        if (opts.refuseWith !== undefined) {
          res.writeHead(opts.refuseWith, { "content-type": "application/json" }).end('{"message":"refused"}');
          return;
        }
        let body: Buffer = Buffer.concat(chunks);
        if (req.headers["content-encoding"] === "gzip") body = gunzipSync(body);
        if (type.startsWith("application/json")) {
          spans.push(...decodeJson(JSON.parse(body.toString("utf8")) as JsonRequest));
          requests.json++;
          res.writeHead(200, { "content-type": "application/json" }).end("{}");
        } else if (type.startsWith("application/x-protobuf")) {
          spans.push(...decodeProtobuf(new Uint8Array(body)));
          requests.protobuf++;
          res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
        } else {
          throw new Error(`unsupported content type ${type}`);
        }
      } catch (err) {
        rejected.push(err instanceof Error ? err.message : String(err));
        res.writeHead(400).end();
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    requests,
    received,
    rejected,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

// ---- OTLP/JSON ----

interface JsonAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number;
  arrayValue?: { values?: JsonAnyValue[] };
}
interface JsonKeyValue {
  key: string;
  value?: JsonAnyValue;
}
interface JsonRequest {
  resourceSpans?: Array<{
    resource?: { attributes?: JsonKeyValue[] };
    scopeSpans?: Array<{
      scope?: { name?: string };
      spans?: Array<{
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        name: string;
        kind?: number;
        attributes?: JsonKeyValue[];
        links?: Array<{ traceId: string; spanId: string; attributes?: JsonKeyValue[] }>;
        status?: { code?: number };
      }>;
    }>;
  }>;
}

function decodeJson(body: JsonRequest): OtlpSpan[] {
  const out: OtlpSpan[] = [];
  for (const rs of body.resourceSpans ?? []) {
    const resource = jsonAttributes(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: s.traceId.toLowerCase(),
          spanId: s.spanId.toLowerCase(),
          parentSpanId: (s.parentSpanId ?? "").toLowerCase(),
          name: s.name,
          kind: s.kind ?? 0,
          attributes: jsonAttributes(s.attributes),
          links: (s.links ?? []).map((l) => ({ traceId: l.traceId.toLowerCase(), spanId: l.spanId.toLowerCase(), attributes: jsonAttributes(l.attributes) })),
          statusCode: s.status?.code ?? 0,
          resource,
          scope: ss.scope?.name ?? "",
          encoding: "json",
        });
      }
    }
  }
  return out;
}

function jsonAttributes(list: JsonKeyValue[] | undefined): Record<string, OtlpValue> {
  const out: Record<string, OtlpValue> = {};
  for (const kv of list ?? []) out[kv.key] = jsonValue(kv.value);
  return out;
}

function jsonValue(v: JsonAnyValue | undefined): OtlpValue {
  if (v === undefined) return undefined;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return int(BigInt(v.intValue));
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map(jsonValue);
  return undefined;
}

// ---- OTLP/protobuf (opentelemetry/proto/collector/trace/v1, trace/v1, common/v1) ----

/** Calls `onField(fieldNo, wireType)` for every field of a message; the callback reads or skips it. */
function fields(bytes: Uint8Array, onField: (r: BinaryReader, no: number, wire: WireType) => boolean): void {
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [no, wire] = r.tag();
    if (!onField(r, no, wire)) r.skip(wire, no);
  }
}

function decodeProtobuf(bytes: Uint8Array): OtlpSpan[] {
  const out: OtlpSpan[] = [];
  // ExportTraceServiceRequest.resource_spans = 1
  fields(bytes, (r, no) => {
    if (no !== 1) return false;
    let resource: Record<string, OtlpValue> = {};
    const scopes: Uint8Array[] = [];
    // ResourceSpans: resource = 1, scope_spans = 2
    fields(r.bytes(), (r2, n2) => {
      if (n2 === 1) {
        // Resource.attributes = 1
        const attrs: Uint8Array[] = [];
        fields(r2.bytes(), (r3, n3) => (n3 === 1 ? (attrs.push(r3.bytes()), true) : false));
        resource = keyValues(attrs);
        return true;
      }
      if (n2 === 2) {
        scopes.push(r2.bytes());
        return true;
      }
      return false;
    });
    for (const scopeSpans of scopes) {
      let scope = "";
      // ScopeSpans: scope = 1 (InstrumentationScope.name = 1), spans = 2
      fields(scopeSpans, (r2, n2) => {
        if (n2 === 1) {
          fields(r2.bytes(), (r3, n3) => (n3 === 1 ? ((scope = r3.string()), true) : false));
          return true;
        }
        if (n2 === 2) {
          out.push({ ...span(r2.bytes()), resource, scope, encoding: "protobuf" });
          return true;
        }
        return false;
      });
    }
    return true;
  });
  return out;
}

function span(bytes: Uint8Array): Omit<OtlpSpan, "resource" | "scope" | "encoding"> {
  let traceId = "";
  let spanId = "";
  let parentSpanId = "";
  let name = "";
  let kind = 0;
  let statusCode = 0;
  const attrs: Uint8Array[] = [];
  const links: OtlpLink[] = [];
  fields(bytes, (r, no) => {
    switch (no) {
      case 1:
        traceId = hex(r.bytes());
        return true;
      case 2:
        spanId = hex(r.bytes());
        return true;
      case 4:
        parentSpanId = hex(r.bytes());
        return true;
      case 5:
        name = r.string();
        return true;
      case 6:
        kind = r.int32();
        return true;
      case 9:
        attrs.push(r.bytes());
        return true;
      case 13:
        links.push(link(r.bytes()));
        return true;
      case 15:
        // Status: message = 2, code = 3
        fields(r.bytes(), (r2, n2) => (n2 === 3 ? ((statusCode = r2.int32()), true) : false));
        return true;
      default:
        return false;
    }
  });
  return { traceId, spanId, parentSpanId, name, kind, attributes: keyValues(attrs), links, statusCode };
}

function link(bytes: Uint8Array): OtlpLink {
  let traceId = "";
  let spanId = "";
  const attrs: Uint8Array[] = [];
  // Span.Link: trace_id = 1, span_id = 2, attributes = 4
  fields(bytes, (r, no) => {
    if (no === 1) traceId = hex(r.bytes());
    else if (no === 2) spanId = hex(r.bytes());
    else if (no === 4) attrs.push(r.bytes());
    else return false;
    return true;
  });
  return { traceId, spanId, attributes: keyValues(attrs) };
}

/** KeyValue: key = 1, value = 2 (AnyValue). */
function keyValues(list: readonly Uint8Array[]): Record<string, OtlpValue> {
  const out: Record<string, OtlpValue> = {};
  for (const bytes of list) {
    let key = "";
    let value: OtlpValue;
    fields(bytes, (r, no) => {
      if (no === 1) key = r.string();
      else if (no === 2) value = anyValue(r.bytes());
      else return false;
      return true;
    });
    out[key] = value;
  }
  return out;
}

/** AnyValue: string 1, bool 2, int64 3, double 4, array 5 (ArrayValue.values = 1). */
function anyValue(bytes: Uint8Array): OtlpValue {
  let value: OtlpValue;
  fields(bytes, (r, no) => {
    switch (no) {
      case 1:
        value = r.string();
        return true;
      case 2:
        value = r.bool();
        return true;
      case 3:
        value = int(BigInt(r.int64()));
        return true;
      case 4:
        value = r.double();
        return true;
      case 5: {
        const items: OtlpValue[] = [];
        fields(r.bytes(), (r2, n2) => (n2 === 1 ? (items.push(anyValue(r2.bytes())), true) : false));
        value = items;
        return true;
      }
      default:
        return false;
    }
  });
  return value;
}

function int(v: bigint): number | string {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}
