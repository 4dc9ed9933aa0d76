import type { JsonValue } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { MongoClient, MongoServerError, type Collection, type Filter } from "mongodb";
import { checkPageSize, decodeCursor, encodeCursor } from "../cursor.js";
import { appliedResult, applyToDoc, duplicateResult } from "../derive.js";
import { atBatchIndex, ConflictError } from "../errors.js";
import { checkEvent, eventFromJson, eventJson, eventKey } from "../events.js";
import type { ApplyResult, Page, PageRequest, ProjectedEvent, ShipmentDoc, ShipmentQuery, ShipmentStore, StoredEvent } from "../ports.js";
import { normalizeQuery } from "../query.js";
import { MAX_DOCUMENT_BYTES } from "../size.js";
import { fitDocument } from "../trim-document.js";

/** Options for {@link createMongoShipmentStore}. */
export interface MongoShipmentStoreOptions {
  /** Connection string (e.g. `mongodb://host:27017`). Ignored when `client` is given. */
  url?: string;
  /** An existing, connected client (not closed by `close()`). */
  client?: MongoClient;
  /** Database name. */
  dbName: string;
  /** Prefix of the collection names. Default "". */
  collectionPrefix?: string;
  /** Pool size when the store creates the client. Default 10. */
  maxPoolSize?: number;
  /** Attempts of one apply under version conflicts before ConflictError. Default 50. */
  maxAttempts?: number;
  /** Size limit of one document or event (JSON bytes). Default 256 KiB. */
  maxDocumentBytes?: number;
}

/** A shipment as stored: the document keyed by tracking number, plus a GeoJSON point for 2dsphere. */
type MongoShipment = ShipmentDoc & { _id: string; geo?: { type: "Point"; coordinates: [number, number] } };

/** One history entry; `_id` is the event id (unique). */
interface MongoEvent {
  _id: string;
  trackingNumber: string;
  /** The catalog name of the event. */
  type: ProjectedEvent["type"];
  /** BSON date of the event time: the time field for archiving months out of the hot collection. */
  eventTime: Date;
  eventTimeIso: string;
  late: boolean;
  appliedAt: Date;
  /** The proto JSON of the event's message. */
  event: JsonValue;
}

const DUPLICATE_KEY = 11000;
const EARTH_RADIUS_KM = 6378.1;

function isDuplicateKey(err: unknown): boolean {
  return err instanceof MongoServerError && err.code === DUPLICATE_KEY;
}

function toDoc(m: MongoShipment): ShipmentDoc {
  const { _id: _ignored, geo: _geo, ...doc } = m;
  return doc;
}

function toStored(doc: ShipmentDoc): Omit<MongoShipment, "_id"> {
  return doc.location ? { ...doc, geo: { type: "Point", coordinates: [doc.location.longitude, doc.location.latitude] } } : { ...doc };
}

/**
 * Creates the MongoDB adapter of {@link ShipmentStore}.
 *
 * Collections: `<prefix>shipments` (`_id` = tracking number, `version` as the compare-and-set
 * token, `geo` GeoJSON point with a 2dsphere index) and `<prefix>shipment_events` (`_id` = event
 * id, so the history is unique per event; `eventTime` as a BSON date).
 *
 * Apply needs no multi-document transaction: the shipment document itself records applied event
 * ids (derive.ts), so the CAS `replaceOne({_id, version})` is the atomic "apply exactly once"
 * step; the history entry is then upserted by event id. A crash between the two is repaired by
 * the redelivery, which finds the event in the document (duplicate) and upserts the history again.
 * A document trimmed to its size limit (trim-document.ts) no longer lists the ids it dropped; for
 * an event it does not list, the history says whether it was applied (one lookup, on trimmed
 * documents only). A trim keeps at least the newest 256 ids while it can, so the crash window
 * above is covered unless the shipment got hundreds of events before the redelivery.
 *
 * Sharding: shard both collections on `{ trackingNumber: "hashed" }` (shipments: `{ _id: "hashed" }`),
 * so a shipment and its history live on one shard, writes spread evenly, and per-shipment queries
 * are single-shard. Customer/status/geo searches scatter-gather, which is the accepted cost.
 */
export async function createMongoShipmentStore(options: MongoShipmentStoreOptions): Promise<ShipmentStore> {
  const ownClient = options.client === undefined;
  let client: MongoClient;
  if (options.client) client = options.client;
  else {
    if (!options.url) throw new Error("createMongoShipmentStore: url or client is required");
    client = new MongoClient(options.url, { maxPoolSize: options.maxPoolSize ?? 10 });
    await client.connect();
  }
  const prefix = options.collectionPrefix ?? "";
  const db = client.db(options.dbName);
  const shipments: Collection<MongoShipment> = db.collection<MongoShipment>(`${prefix}shipments`);
  const events: Collection<MongoEvent> = db.collection<MongoEvent>(`${prefix}shipment_events`);
  const maxAttempts = options.maxAttempts ?? 50;
  const maxBytes = options.maxDocumentBytes ?? MAX_DOCUMENT_BYTES;

  try {
    await shipments.createIndexes([
      { key: { customerId: 1, status: 1, updatedAt: -1, _id: -1 }, name: "customer_status_updated" },
      { key: { carrierCode: 1, status: 1 }, name: "carrier_status" },
      { key: { updatedAt: -1, _id: -1 }, name: "updated" },
      { key: { geo: "2dsphere" }, name: "geo" },
      // A customer's area search (every area search of a customer token) reads that customer's
      // entries in the area's cells, not every customer's; documents without `geo` are left out.
      { key: { customerId: 1, geo: "2dsphere" }, name: "customer_geo" },
    ]);
    await events.createIndexes([{ key: { trackingNumber: 1, eventTime: 1, _id: 1 }, name: "tracking_time" }]);
  } catch (err) {
    if (ownClient) await client.close();
    throw err;
  }

  async function getShipment(trackingNumber: string): Promise<ShipmentDoc | undefined> {
    const m = await shipments.findOne({ _id: trackingNumber });
    return m ? toDoc(m) : undefined;
  }

  async function recordHistory(event: ProjectedEvent, late: boolean): Promise<void> {
    const key = eventKey(event);
    try {
      await events.updateOne(
        { _id: key.eventId },
        {
          $setOnInsert: {
            trackingNumber: key.trackingNumber,
            type: event.type,
            eventTime: new Date(key.eventTime),
            eventTimeIso: key.eventTime,
            late,
            appliedAt: new Date(),
            event: eventJson(event),
          },
        },
        { upsert: true },
      );
    } catch (err) {
      // Two upserts of the same id raced; the other one wrote the same entry.
      if (!isDuplicateKey(err)) throw err;
    }
  }

  const store: ShipmentStore = {
    async applyEvent(event: ProjectedEvent): Promise<ApplyResult> {
      checkEvent(event, maxBytes);
      const { eventId, trackingNumber } = eventKey(event);
      for (let attempt = 1; attempt <= maxAttempts; attempt++) {
        const before = await getShipment(trackingNumber);
        const derived = applyToDoc(before, event);
        if (derived.duplicate) {
          await recordHistory(event, false);
          return duplicateResult(derived.doc);
        }
        // A trimmed document no longer lists the ids it dropped: the history, keyed by event id,
        // tells whether such an event was applied (it is written after the document).
        if (before?.derivation.trimmed?.ids && (await events.countDocuments({ _id: eventId }, { limit: 1 })) > 0) {
          return duplicateResult(before);
        }
        // Trimmed when over the limit (trim-document.ts).
        const { doc } = fitDocument(derived.doc, JSON.stringify(derived.doc), maxBytes, 1);
        if (before) {
          const res = await shipments.replaceOne({ _id: trackingNumber, version: before.version }, toStored(doc));
          if (res.matchedCount !== 1) continue;
        } else {
          try {
            await shipments.insertOne({ _id: trackingNumber, ...toStored(doc) });
          } catch (err) {
            if (isDuplicateKey(err)) continue;
            throw err;
          }
        }
        await recordHistory(event, derived.late);
        return appliedResult(before, doc === derived.doc ? derived : { ...derived, doc });
      }
      throw new ConflictError(trackingNumber, maxAttempts);
    },

    /**
     * Validates every event first (an invalid one throws with `batchIndex`, nothing written),
     * then applies them one by one, in order, through applyEvent: MongoDB has no cheap
     * multi-document commit to group, and each apply is already its own CAS. An error at index i
     * (DocumentTooLargeError, ConflictError) leaves the events before i applied.
     */
    async applyEvents(inputs: readonly ProjectedEvent[]): Promise<ApplyResult[]> {
      inputs.forEach((e, i) => {
        try {
          checkEvent(e, maxBytes);
        } catch (err) {
          throw atBatchIndex(err, i);
        }
      });
      const results: ApplyResult[] = [];
      for (const [i, e] of inputs.entries()) {
        try {
          results.push(await store.applyEvent(e));
        } catch (err) {
          throw atBatchIndex(err, i);
        }
      }
      return results;
    },

    getShipment,

    async listEvents(trackingNumber: string, page: PageRequest): Promise<Page<StoredEvent>> {
      const size = checkPageSize(page.pageSize);
      const after = decodeCursor(page.cursor);
      const filter: Filter<MongoEvent> = after
        ? {
            trackingNumber,
            $or: [{ eventTime: { $gt: new Date(after[0]) } }, { eventTime: new Date(after[0]), _id: { $gt: after[1] } }],
          }
        : { trackingNumber };
      const rows = await events
        .find(filter)
        .sort({ eventTime: 1, _id: 1 })
        .limit(size + 1)
        .toArray();
      const items: StoredEvent[] = rows.slice(0, size).map((r) => ({
        event: eventFromJson(r.type, r.event),
        eventId: r._id,
        trackingNumber: r.trackingNumber,
        eventTime: r.eventTimeIso,
        late: r.late,
        appliedAt: timestampFromDate(r.appliedAt),
      }));
      const last = items[items.length - 1];
      return rows.length > size && last ? { items, nextCursor: encodeCursor([last.eventTime, last.eventId]) } : { items };
    },

    async searchShipments(query: ShipmentQuery): Promise<Page<ShipmentDoc>> {
      const q = normalizeQuery(query);
      const and: Filter<MongoShipment>[] = [];
      if (q.customerId !== undefined) and.push({ customerId: q.customerId });
      if (q.carrierCode !== undefined) and.push({ carrierCode: q.carrierCode });
      if (q.statuses) and.push({ status: { $in: q.statuses } });
      // updatedAt is a normalized ISO string, so string order is time order.
      if (q.updatedAfter !== undefined) and.push({ updatedAt: { $gte: q.updatedAfter } });
      if (q.updatedBefore !== undefined) and.push({ updatedAt: { $lt: q.updatedBefore } });
      if (q.near) {
        and.push({
          geo: { $geoWithin: { $centerSphere: [[q.near.lon, q.near.lat], q.near.radiusKm / EARTH_RADIUS_KM] } },
        });
      }
      if (q.after) {
        const [updatedAt, id] = q.after;
        and.push({ $or: [{ updatedAt: { $lt: updatedAt } }, { updatedAt, _id: { $lt: id } }] });
      }
      const rows = await shipments
        .find(and.length ? { $and: and } : {})
        .sort({ updatedAt: -1, _id: -1 })
        .limit(q.pageSize + 1)
        .toArray();
      const items = rows.slice(0, q.pageSize).map(toDoc);
      const last = items[items.length - 1];
      return rows.length > q.pageSize && last
        ? { items, nextCursor: encodeCursor([last.updatedAt, last.trackingNumber]) }
        : { items };
    },

    async close() {
      if (ownClient) await client.close();
    },
  };
  return store;
}
