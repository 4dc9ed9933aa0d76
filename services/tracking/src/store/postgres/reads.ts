import type { JsonValue } from "@bufbuild/protobuf";
import { named } from "@logistics/shared/postgres";
import type pg from "pg";
import { checkPageSize, decodeCursor, encodeCursor } from "../cursor.js";
import { storedEvent } from "../events.js";
import type { Page, PageRequest, ShipmentDoc, ShipmentQuery, StoredEvent } from "../ports.js";
import { normalizeQuery } from "../query.js";
import { buildSearchSql } from "./search-sql.js";

/** The PostgreSQL store's reads: one statement each on the pool, no transaction. */

/** `getShipment`: the document, or undefined. */
export async function getShipment(pool: pg.Pool, trackingNumber: string): Promise<ShipmentDoc | undefined> {
  const res = await pool.query<{ doc: ShipmentDoc }>(named("SELECT doc FROM shipments WHERE tracking_number = $1"), [trackingNumber]);
  return res.rows[0]?.doc;
}

interface EventRow {
  event_id: string;
  tracking_number: string;
  event_type: string;
  late: boolean;
  applied_at: Date;
  payload: JsonValue;
}

function toStoredEvent(r: EventRow): StoredEvent {
  return storedEvent(r.event_type, r.payload, r.late, r.applied_at);
}

/** `listEvents`: a page of the history in (event_time, event_id) order, the messages read back from their proto JSON. */
export async function listEvents(pool: pg.Pool, trackingNumber: string, page: PageRequest): Promise<Page<StoredEvent>> {
  const size = checkPageSize(page.pageSize);
  const after = decodeCursor(page.cursor);
  const params: unknown[] = [trackingNumber, size + 1];
  let cond = "";
  if (after) {
    params.push(after[0], after[1]);
    cond = "AND (event_time, event_id) > ($3::timestamptz, $4)";
  }
  const res = await pool.query<EventRow>(
    named(`SELECT event_id, tracking_number, event_type, late, applied_at, payload FROM shipment_events
      WHERE tracking_number = $1 ${cond} ORDER BY event_time, event_id LIMIT $2`),
    params,
  );
  const items = res.rows.slice(0, size).map(toStoredEvent);
  const last = items[items.length - 1];
  return res.rows.length > size && last ? { items, nextCursor: encodeCursor([last.eventTime, last.eventId]) } : { items };
}

/** `searchShipments`: the statement {@link buildSearchSql} builds, paged by (updatedAt, trackingNumber). */
export async function searchShipments(pool: pg.Pool, query: ShipmentQuery): Promise<Page<ShipmentDoc>> {
  const q = normalizeQuery(query);
  const { text, values } = buildSearchSql(q);
  const res = await pool.query<{ doc: ShipmentDoc }>(text, values);
  const items = res.rows.slice(0, q.pageSize).map((r) => r.doc);
  const last = items[items.length - 1];
  return res.rows.length > q.pageSize && last ? { items, nextCursor: encodeCursor([last.updatedAt, last.trackingNumber]) } : { items };
}
