import { create, toBinary, type DescMessage } from "@bufbuild/protobuf";
import { TimestampSchema, type Timestamp } from "@bufbuild/protobuf/wkt";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { ScanRecordedSchema, type ScanRecorded } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { StreamScansRequestSchema } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";

/** The fields of a message as `number name kind type`, one per line (what the hand-written part below relies on). */
export function fieldShape(desc: DescMessage): string {
  return desc.fields
    .map((f) => `${f.number} ${f.name} ${f.fieldKind} ${f.fieldKind === "scalar" ? f.scalar : f.fieldKind === "enum" ? f.enum.typeName : f.fieldKind === "message" ? f.message.typeName : "?"}`)
    .join("\n");
}

/** ScanRecorded's fields as {@link encodeScanEvents} writes them; any other shape is encoded with `toBinary`. */
export const SCAN_RECORDED_SHAPE = [
  "1 event_id scalar 9",
  "2 scan message logistics.common.v1.Scan",
  "3 status enum logistics.common.v1.ShipmentStatus",
  "4 kind enum logistics.common.v1.ScanKind",
  "5 recorded_at message google.protobuf.Timestamp",
  "6 region scalar 9",
].join("\n");

const SHAPE_KNOWN = fieldShape(ScanRecordedSchema) === SCAN_RECORDED_SHAPE;

/**
 * The bytes of each event, equal to `toBinary(ScanRecordedSchema, event)`, for a batch at a
 * fraction of the cost: `toBinary` per event spends most of its time on a writer and a buffer per
 * message and per nested message. Here every scan of the batch is encoded in one pass (as the
 * repeated `scans` of one StreamScansRequest, whose elements are each scan's own bytes), each
 * distinct `recorded_at` once, and the event's own fields are written around them in
 * field-number order as `toBinary` writes them. A batch of one, an event carrying unknown
 * fields, or a ScanRecorded whose fields are no longer {@link SCAN_RECORDED_SHAPE} is encoded
 * with `toBinary`.
 */
export function encodeScanEvents(events: readonly ScanRecorded[]): Uint8Array[] {
  if (!SHAPE_KNOWN || events.length < 2) return events.map((e) => toBinary(ScanRecordedSchema, e));
  const scans = [];
  for (const e of events) if (e.scan) scans.push(e.scan);
  const scanBytes = repeatedField(toBinary(StreamScansRequestSchema, create(StreamScansRequestSchema, { scans })), 1);
  if (scanBytes.length !== scans.length) throw new Error(`encodeScanEvents: ${scans.length} scans encoded as ${scanBytes.length}`);
  const w = new BinaryWriter();
  const out: Uint8Array[] = [];
  let at: Timestamp | undefined;
  let atBytes = new Uint8Array(0);
  let k = 0;
  for (const e of events) {
    const bytes = e.scan ? (scanBytes[k++] as Uint8Array) : undefined;
    if (e.$unknown?.length) {
      out.push(toBinary(ScanRecordedSchema, e));
      continue;
    }
    if (e.eventId !== "") w.tag(1, WireType.LengthDelimited).string(e.eventId);
    if (bytes) w.tag(2, WireType.LengthDelimited).bytes(bytes);
    if (e.status !== 0) w.tag(3, WireType.Varint).int32(e.status);
    if (e.kind !== 0) w.tag(4, WireType.Varint).int32(e.kind);
    if (e.recordedAt) {
      if (e.recordedAt !== at) {
        at = e.recordedAt;
        atBytes = toBinary(TimestampSchema, at);
      }
      w.tag(5, WireType.LengthDelimited).bytes(atBytes);
    }
    if (e.region !== "") w.tag(6, WireType.LengthDelimited).string(e.region);
    out.push(w.finish());
  }
  return out;
}

/** The length-delimited values of field `field` in `bytes` (views, not copies), in order. */
function repeatedField(bytes: Uint8Array, field: number): Uint8Array[] {
  const r = new BinaryReader(bytes);
  const out: Uint8Array[] = [];
  while (r.pos < r.len) {
    const [no, type] = r.tag();
    if (no === field && type === WireType.LengthDelimited) out.push(r.bytes());
    else r.skip(type, no);
  }
  return out;
}
