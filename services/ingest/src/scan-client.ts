/**
 * A carrier gateway's gRPC client for IngestService, over @grpc/grpc-js (a plain gRPC stack, as
 * gateways in any language use one): a managed scan stream that matches acks to sends, and the
 * raw calls the tests and benchmarks drive directly.
 */
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { context, propagation } from "@opentelemetry/api";
import type { Scan, ScanSchema } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import {
  StreamScansRequestSchema,
  StreamScansResponseSchema,
  SubmitScansRequestSchema,
  SubmitScansResponseSchema,
  type ScanAck,
  type StreamScansRequest,
  type StreamScansResponse,
  type SubmitScansResponse,
} from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";

/** Options for {@link openScanStream}. */
export interface ScanStreamOptions {
  /** Ingest's gRPC address as `host:port` (h2c). */
  readonly address: string;
  /** Bearer token with `scans:write` (and the carrier claim for a carrier gateway). */
  readonly token: string;
  /** Extra metadata for the call, e.g. a `traceparent`. */
  readonly metadata?: Readonly<Record<string, string>>;
}

/** One open IngestService.StreamScans call, as a carrier gateway holds it. */
export interface ScanStream {
  /**
   * Sends scans as one request message and resolves with their acks (matched by event_id). When a
   * span is active (the gateway traces this batch), its context goes into the message's
   * `traceparent`/`tracestate`, so ingest's trace of the message continues the gateway's.
   */
  send(scans: ReadonlyArray<MessageInitShape<typeof ScanSchema>>): Promise<ScanAck[]>;
  /** True once the call failed or ended; open a new stream to continue. */
  readonly closed: boolean;
  /** Half-closes the call and waits for the server to end it. Idempotent. */
  close(): Promise<void>;
}

/**
 * Opens a StreamScans call with @grpc/grpc-js (a plain gRPC client over HTTP/2, as carrier
 * gateways in any language use it). Acks are matched to pending sends by event_id; when the call
 * fails every pending send rejects with the call's error.
 */
export function openScanStream(o: ScanStreamOptions): ScanStream {
  const client = new grpc.Client(o.address, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${o.token}`);
  for (const [k, v] of Object.entries(o.metadata ?? {})) md.set(k, v);
  const call = client.makeBidiStreamRequest(
    "/logistics.ingest.v1.IngestService/StreamScans",
    (m: StreamScansRequest) => Buffer.from(toBinary(StreamScansRequestSchema, m)),
    (b: Buffer) => fromBinary(StreamScansResponseSchema, b),
    md,
  );
  const pending = new Map<string, { resolve(a: ScanAck): void; reject(e: Error): void }>();
  let closed = false;
  let failure: Error | undefined;
  const ended = new Promise<void>((resolve) => {
    call.on("status", () => resolve());
    call.on("close", () => resolve());
  });
  call.on("data", (res: StreamScansResponse) => {
    for (const ack of res.acks) {
      const p = pending.get(ack.eventId);
      if (p) {
        pending.delete(ack.eventId);
        p.resolve(ack);
      }
    }
  });
  const fail = (e: Error) => {
    closed = true;
    failure ??= e;
    for (const p of pending.values()) p.reject(e);
    pending.clear();
  };
  call.on("error", (e: Error) => fail(e));
  call.on("end", () => fail(new Error("StreamScans ended by the server")));

  return {
    get closed() {
      return closed;
    },
    async send(scans) {
      if (closed) throw failure ?? new Error("StreamScans is closed");
      const fields: Record<string, string> = {};
      propagation.inject(context.active(), fields);
      const req = create(StreamScansRequestSchema, {
        scans: [...scans],
        traceparent: fields["traceparent"] ?? "",
        tracestate: fields["tracestate"] ?? "",
      });
      const acks = req.scans.map(
        (s) =>
          new Promise<ScanAck>((resolve, reject) => {
            pending.set(s.eventId, { resolve, reject });
          }),
      );
      call.write(req);
      return Promise.all(acks);
    },
    async close() {
      if (!closed) {
        closed = true;
        call.end();
        const timer = setTimeout(() => call.cancel(), 2000);
        await ended;
        clearTimeout(timer);
      }
      client.close();
    },
  };
}

/** Bearer metadata for grpc-js. */
export function bearer(token: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${token}`);
  return md;
}

/** Opens a raw StreamScans bidi call with protobuf-es (de)serializers (grpc-js). */
export function openScanCall(
  client: grpc.Client,
  md: grpc.Metadata,
): grpc.ClientDuplexStream<StreamScansRequest, StreamScansResponse> {
  return client.makeBidiStreamRequest(
    "/logistics.ingest.v1.IngestService/StreamScans",
    (m: StreamScansRequest) => Buffer.from(toBinary(StreamScansRequestSchema, m)),
    (b: Buffer) => fromBinary(StreamScansResponseSchema, b),
    md,
  );
}

/** A StreamScans request message. */
export function scanMessage(scans: Scan[]): StreamScansRequest {
  return create(StreamScansRequestSchema, { scans });
}

/** Calls SubmitScans; resolves with the response and the trailing metadata, or rejects with the ServiceError. */
export function submitScans(client: grpc.Client, md: grpc.Metadata, scans: Scan[]): Promise<SubmitScansResponse> {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(
      "/logistics.ingest.v1.IngestService/SubmitScans",
      (m: ReturnType<typeof create<typeof SubmitScansRequestSchema>>) => Buffer.from(toBinary(SubmitScansRequestSchema, m)),
      (b: Buffer) => fromBinary(SubmitScansResponseSchema, b),
      create(SubmitScansRequestSchema, { scans }),
      md,
      (err, res) => (err || !res ? reject(err) : resolve(res)),
    ),
  );
}

/** Outcome of {@link streamAll}. */
export interface StreamRun {
  /** One response per request message, in order. */
  readonly responses: StreamScansResponse[];
  /** gRPC status the call ended with. */
  readonly status: grpc.StatusObject;
}

/**
 * Streams `messages` over `call` like a well-behaved gateway: at most `maxUnacked` request
 * messages without a response, and no write while grpc-js reports a full buffer. `onResponse`
 * sees every response as it arrives (index = request message). Resolves when the call ends.
 * `Req` is whatever the call's serializer takes: request messages ({@link openScanCall}) or
 * request bytes encoded beforehand (a benchmark keeping the encoding out of its timed region).
 */
export function streamAll<Req = StreamScansRequest>(
  call: grpc.ClientDuplexStream<Req, StreamScansResponse>,
  messages: readonly Req[],
  maxUnacked: number,
  onResponse?: (res: StreamScansResponse, index: number) => void,
): Promise<StreamRun> {
  return new Promise((resolve, reject) => {
    const responses: StreamScansResponse[] = [];
    let sent = 0;
    let needDrain = false;
    let ended = false;
    const pump = () => {
      while (!needDrain && sent < messages.length && sent - responses.length < maxUnacked) {
        needDrain = !call.write(messages[sent++]);
      }
      if (sent === messages.length && !ended) {
        ended = true;
        call.end();
      }
    };
    call.on("data", (res: StreamScansResponse) => {
      responses.push(res);
      onResponse?.(res, responses.length - 1);
      pump();
    });
    call.on("drain", () => {
      needDrain = false;
      pump();
    });
    call.on("error", () => {});
    call.on("status", (status: grpc.StatusObject) => resolve({ responses, status }));
    try {
      pump();
    } catch (err) {
      reject(err);
    }
  });
}
