import { named } from "@logistics/shared/postgres";
import type pg from "pg";
import { appliedResult, applyToDoc, duplicateResult } from "../derive.js";
import type { ApplyResult, ProjectedEvent, ShipmentDoc } from "../ports.js";
import { fitDocument } from "../trim-document.js";
import { CasMiss, checked, withConflictRetries, type ApplySettings, type CheckedEvent } from "./apply-shared.js";
import type { DocCache } from "./doc-cache.js";

/**
 * `applyEvent` of the PostgreSQL store: one transaction per event on one pooled connection,
 * retried as a whole on a conflict (see {@link applyOnce}) up to `maxAttempts` times. Drops the
 * shipment from `cache` (`applyEvents`' documents) once done: the batch apply would find the
 * cached document outdated anyway (doc-cache.ts), at the cost of a failed write.
 */
export async function applyEvent(pool: pg.Pool, input: ProjectedEvent, settings: ApplySettings, cache?: DocCache): Promise<ApplyResult> {
  const event = checked(input, settings.maxBytes);
  try {
    return await withConflictRetries(pool, settings.maxAttempts, {
      locked: (client) => applyOnce(client, event, settings.maxBytes),
      shipments: () => event.key.trackingNumber,
    });
  } finally {
    cache?.delete([event.key.trackingNumber]);
  }
}

/**
 * One attempt: claim the event id (a repeat finds it claimed → duplicate), lock the document,
 * derive (derive.ts), compare-and-set on `version` and append history, in one transaction.
 */
async function applyOnce(client: pg.PoolClient, checkedEvent: CheckedEvent, maxBytes: number): Promise<ApplyResult> {
  const { event, key } = checkedEvent;
  await client.query("BEGIN");
  // Claim the event id and lock the document in one round trip. A concurrent claim of the same
  // id waits for the other transaction, then finds the row (duplicate) or not (it rolled back).
  const claim = await client.query<{ claimed: number; doc: ShipmentDoc | null }>(
    named(`WITH claim AS (
       INSERT INTO applied_events (event_id, tracking_number, event_time) VALUES ($1, $2, $3)
       ON CONFLICT DO NOTHING RETURNING event_id)
     SELECT (SELECT count(*) FROM claim)::int AS claimed,
            (SELECT doc FROM shipments WHERE tracking_number = $2 FOR UPDATE) AS doc`),
    [key.eventId, key.trackingNumber, key.eventTime],
  );
  const row = claim.rows[0];
  if (!row || row.claimed === 0) {
    await client.query("ROLLBACK");
    // Read on the connection already held: taking a second pooled connection here could
    // starve the pool when every connection is waiting the same way.
    const doc = (await client.query<{ doc: ShipmentDoc }>(named("SELECT doc FROM shipments WHERE tracking_number = $1"), [key.trackingNumber]))
      .rows[0]?.doc;
    if (!doc) throw new Error(`event ${key.eventId} is recorded as applied but shipment ${key.trackingNumber} is missing`);
    return duplicateResult(doc);
  }
  const before = row.doc ?? undefined;
  const derived = applyToDoc(before, event, checkedEvent.value);
  if (derived.duplicate) {
    // Already part of the document (e.g. written before the dedupe row existed): keep the claim.
    await client.query("COMMIT");
    return duplicateResult(derived.doc);
  }
  // Serialized once: for the size limit and the write. Trimmed when over the limit (trim-document.ts).
  const { doc, json: docJson } = fitDocument(derived.doc, JSON.stringify(derived.doc), maxBytes, 1);
  const params = [
    doc.trackingNumber,
    doc.customerId ?? null,
    doc.carrierCode ?? null,
    doc.status,
    doc.updatedAt,
    doc.location?.latitude ?? null,
    doc.location?.longitude ?? null,
    doc.version,
    docJson,
    key.eventId,
    key.eventTime,
    event.type,
    derived.late,
    checkedEvent.json,
  ];
  // Compare-and-set the document and append history in one statement: the history row is
  // written only when the CAS matched, so rowCount 1 means both happened.
  const history = `INSERT INTO shipment_events (event_id, tracking_number, event_time, event_type, late, payload)
    SELECT $10::text, $1::text, $11::timestamptz, $12::text, $13::boolean, $14::jsonb WHERE EXISTS (SELECT 1 FROM w)`;
  const write = before
    ? await client.query(
        named(`WITH w AS (
           UPDATE shipments SET customer_id = $2, carrier_code = $3, status = $4, updated_at = $5, lat = $6, lon = $7,
             version = $8, doc = $9::jsonb
           WHERE tracking_number = $1 AND version = $15 RETURNING 1)
         ${history}`),
        [...params, before.version],
      )
    : await client.query(
        named(`WITH w AS (
           INSERT INTO shipments (tracking_number, customer_id, carrier_code, status, updated_at, lat, lon, version, doc)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb) ON CONFLICT (tracking_number) DO NOTHING RETURNING 1)
         ${history}`),
        params,
      );
  if (write.rowCount !== 1) throw new CasMiss();
  await client.query("COMMIT");
  return appliedResult(before, doc === derived.doc ? derived : { ...derived, doc });
}
