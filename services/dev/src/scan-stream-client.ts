import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import type { ScanSchema } from "../../shared/src/gen/logistics/common/v1/scan_pb.js";
import {
  StreamScansRequestSchema,
  StreamScansResponseSchema,
  type ScanAck,
  type StreamScansRequest,
  type StreamScansResponse,
} from "../../shared/src/gen/logistics/ingest/v1/ingest_pb.js";

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
  /** Sends scans as one request message and resolves with their acks (matched by event_id). */
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
      const req = create(StreamScansRequestSchema, { scans: [...scans] });
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
