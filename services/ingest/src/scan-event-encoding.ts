import { create, toBinary } from "@bufbuild/protobuf";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { ScanRecordedSchema, type ScanRecorded } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { StreamScansRequestSchema } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";

/**
 * The bytes of each event, equal to `toBinary(ScanRecordedSchema, event)`, for a batch at a
 * fraction of the cost: `toBinary` per event spends most of its time on a writer and a buffer per
 * message and per nested message. Here every scan of the batch is encoded in one pass (as the
 * repeated `scans` of one StreamScansRequest, whose elements are each scan's own bytes), a
 * message's fields after `scan` (status, kind, recorded_at, region: the same for most scans of a
 * batch) are encoded once per distinct value, and each event is its id, its scan's bytes and
 * those, in field-number order as `toBinary` writes them. An event or `recorded_at` carrying
 * unknown fields is encoded with `toBinary`.
 */
export function encodeScanEvents(events: readonly ScanRecorded[]): Uint8Array[] {
  const scans = [];
  for (const e of events) if (e.scan) scans.push(e.scan);
  const scanBytes = repeatedField(toBinary(StreamScansRequestSchema, create(StreamScansRequestSchema, { scans })), 1);
  if (scanBytes.length !== scans.length) throw new Error(`encodeScanEvents: ${scans.length} scans encoded as ${scanBytes.length}`);
  const tails = new Map<string, Uint8Array>();
  const w = new BinaryWriter();
  const out: Uint8Array[] = [];
  let k = 0;
  for (const e of events) {
    const bytes = e.scan ? (scanBytes[k++] as Uint8Array) : undefined;
    if (e.$unknown?.length || e.recordedAt?.$unknown?.length) {
      out.push(toBinary(ScanRecordedSchema, e));
      continue;
    }
    if (e.eventId !== "") w.tag(1, WireType.LengthDelimited).string(e.eventId);
    if (bytes) w.tag(2, WireType.LengthDelimited).bytes(bytes);
    const at = e.recordedAt;
    const key = `${e.status} ${e.kind} ${at ? `${at.seconds} ${at.nanos}` : "-"} ${e.region}`;
    let tail = tails.get(key);
    if (!tail) {
      tail = toBinary(ScanRecordedSchema, create(ScanRecordedSchema, { status: e.status, kind: e.kind, recordedAt: at, region: e.region }));
      tails.set(key, tail);
    }
    out.push(w.raw(tail).finish());
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
