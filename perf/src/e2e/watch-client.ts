import { create, toBinary } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import * as grpc from "@grpc/grpc-js";
import { WatchShipmentRequestSchema } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";

/**
 * What the end-to-end harness reads of a WatchShipmentResponse: its sequence and kind, the
 * shipment's status and the cause's event id. Everything else in the message is skipped unread.
 */
export interface WatchUpdate {
  /** WatchShipmentResponse.sequence (1). */
  readonly sequence: bigint;
  /** WatchShipmentResponse.kind (2), a WatchUpdateKind. */
  readonly kind: number;
  /** WatchShipmentResponse.shipment (3) → Shipment.status (9), a ShipmentStatus; undefined without a shipment. */
  readonly status: number | undefined;
  /** WatchShipmentResponse.cause (4) → ShipmentEvent.event_id (1); undefined without a cause. */
  readonly causeEventId: string | undefined;
}

/** The first field `field` of a length-delimited message, decoded by `read`, or undefined. */
function firstField<T>(bytes: Uint8Array, field: number, wire: WireType, read: (r: BinaryReader) => T): T | undefined {
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [no, type] = r.tag();
    if (no === field && type === wire) return read(r);
    r.skip(type, no);
  }
  return undefined;
}

/**
 * Decodes the {@link WatchUpdate} fields of a binary WatchShipmentResponse. The load generator
 * shares the machine with the mesh it measures, and decoding every full Shipment (route legs,
 * places, ETA) of every update was a tenth of its CPU: these four fields are all it uses. Field
 * numbers are those of tracking.proto; the unit test checks them against the generated schema.
 */
export function decodeWatchUpdate(bytes: Uint8Array): WatchUpdate {
  const r = new BinaryReader(bytes);
  let sequence = 0n;
  let kind = 0;
  let status: number | undefined;
  let causeEventId: string | undefined;
  while (r.pos < r.len) {
    const [no, type] = r.tag();
    if (no === 1 && type === WireType.Varint) sequence = BigInt(r.uint64());
    else if (no === 2 && type === WireType.Varint) kind = r.int32();
    else if (no === 3 && type === WireType.LengthDelimited) status = firstField(r.bytes(), 9, WireType.Varint, (s) => s.int32()) ?? 0;
    else if (no === 4 && type === WireType.LengthDelimited) causeEventId = firstField(r.bytes(), 1, WireType.LengthDelimited, (s) => s.string()) ?? "";
    else r.skip(type, no);
  }
  return { sequence, kind, status, causeEventId };
}

const WATCH_PATH = "/logistics.tracking.v1.TrackingService/WatchShipment";

/**
 * Opens one WatchShipment call (grpc-js, like the harness's carrier gateway) whose updates are
 * decoded by {@link decodeWatchUpdate} and handed to `onUpdate`. `ended` resolves with the call's
 * final status: OK when the server ended the stream, CANCELLED after `call.cancel()`.
 */
export function openWatch(
  client: grpc.Client,
  md: grpc.Metadata,
  req: { trackingNumber: string; afterSequence: bigint },
  onUpdate: (u: WatchUpdate) => void,
): { call: grpc.ClientReadableStream<WatchUpdate>; ended: Promise<grpc.StatusObject> } {
  const call = client.makeServerStreamRequest(
    WATCH_PATH,
    (m: ReturnType<typeof create<typeof WatchShipmentRequestSchema>>) => Buffer.from(toBinary(WatchShipmentRequestSchema, m)),
    (b: Buffer) => decodeWatchUpdate(b),
    create(WatchShipmentRequestSchema, req),
    md,
  );
  call.on("data", onUpdate);
  // A non-OK status is also emitted as "error": it is answered through `ended`.
  call.on("error", () => {});
  return { call, ended: new Promise((r) => call.once("status", r)) };
}
