import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { createHash } from "node:crypto";
import { ShipmentCreatedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import {
  CreateShipmentRequestSchema,
  CreateShipmentResponseSchema,
  type CreateShipmentRequest,
  type CreateShipmentResponse,
} from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import type { EventPublisher } from "@logistics/shared/nats";
import { assignedTrackingNumber, shipmentEventId, shipmentIdFor } from "./event-ids.js";
import type { ShipmentParties } from "./scan-ownership.js";
import { DirectoryUnavailableError, type ShipmentDirectory } from "./shipment-directory.js";

/** What the idempotency store keeps per (caller, idempotency key): the first result. */
export interface ShipmentRecord {
  /** sha256 (hex) of the request's binary encoding: a replay must match it. */
  readonly requestHash: string;
  readonly trackingNumber: string;
  readonly shipmentId: string;
  readonly createdAtMs: number;
  /** True once the ShipmentCreated event had its PubAck. */
  readonly published: boolean;
}

/** Thrown by a {@link ShipmentStore} that cannot reach its backend. */
export class StoreUnavailableError extends Error {
  override readonly name = "StoreUnavailableError";
}

/** Idempotency records (Redis in production). */
export interface ShipmentStore {
  /** The record under `key`, if any. */
  get(key: string): Promise<ShipmentRecord | undefined>;
  /** Stores `record` unless `key` exists; returns undefined when stored, else the existing record. */
  reserve(key: string, record: ShipmentRecord): Promise<ShipmentRecord | undefined>;
  /** Overwrites the record under `key` (keeping its expiry), e.g. to mark it published. */
  update(key: string, record: ShipmentRecord): Promise<void>;
}

/** Dependencies of {@link createShipmentCreator}. */
export interface ShipmentCreatorOptions {
  publisher: Pick<EventPublisher, "publish">;
  /** Subject of the creation event for a region (`subjects.shipmentCreated`). */
  shipmentSubject(region: string): string;
  region: string;
  store: ShipmentStore;
  /** Where the shipment's carriers are registered (and tracking numbers claimed) before the call answers. */
  directory: Pick<ShipmentDirectory, "register">;
  /** How long to wait for the event's PubAck. Default 5 000 ms. */
  publishDeadlineMs?: number;
  now?: () => number;
  /** Told when the store fails and creation carries on without idempotency records. */
  onStoreError(op: string, err: unknown): void;
}

/** Registers shipments for a caller. */
export type ShipmentCreator = (req: CreateShipmentRequest, callerSubject: string) => Promise<CreateShipmentResponse>;

const MAX_ASSIGN_ATTEMPTS = 8;

/**
 * CreateShipment's logic. The shipment id, the event id (`Nats-Msg-Id`) and an assigned tracking
 * number are all derived from (caller subject, idempotency key), so every retry of one request
 * produces the same event, and JetStream's duplicate window drops repeats.
 *
 * The tracking number is claimed in the shipment directory (JetStream key-value, create-if-absent,
 * so the claim is atomic across replicas and does not depend on Redis): a requested number owned
 * by another shipment fails with AlreadyExists, an assigned one moves to the next candidate. The
 * directory entry (carrier, partners, customer) is written before the event is published and
 * before the call answers, so a scan sent after a successful CreateShipment finds its shipment on
 * every replica. Directory unreachable → Unavailable (retry with the same key).
 *
 * With the idempotency store (Redis): the first result is kept 24 h+ under the key; a repeat with
 * the same request returns it with `replayed = true` (re-publishing the event if the first attempt
 * never got its PubAck), a repeat with different fields fails with FailedPrecondition.
 *
 * Without the store (Redis down): the request is still served with the same deterministic ids, so
 * a retry creates nothing new (the directory already holds the same shipment; JetStream drops the
 * repeated event within its 2-minute window), but it is answered with `replayed = false` and a
 * changed request under a used key is not detected. Publish failure → Unavailable (retry with
 * the same key).
 */
export function createShipmentCreator(opts: ShipmentCreatorOptions): ShipmentCreator {
  const now = opts.now ?? Date.now;
  const timeoutMs = opts.publishDeadlineMs ?? 5000;

  const publish = async (req: CreateShipmentRequest, rec: ShipmentRecord, eventId: string) => {
    const createdAt = timestampFromMs(rec.createdAtMs);
    const event = create(ShipmentCreatedSchema, {
      eventId,
      trackingNumber: rec.trackingNumber,
      shipmentId: rec.shipmentId,
      carrierCode: req.carrierCode,
      customerId: req.customerId,
      customerReference: req.customerReference,
      ...(req.origin ? { origin: req.origin } : {}),
      ...(req.destination ? { destination: req.destination } : {}),
      serviceLevel: req.serviceLevel,
      readyTime: req.readyTime ?? createdAt,
      createdAt,
      weightGrams: req.parcel?.weightGrams ?? 0,
      partnerCarrierCodes: [...new Set(req.partnerCarrierCodes)].filter((c) => c !== req.carrierCode),
    });
    try {
      await opts.publisher.publish(opts.shipmentSubject(opts.region), ShipmentCreatedSchema, event, { msgId: eventId, timeoutMs });
    } catch (err) {
      throw new ConnectError(
        "the event stream did not confirm the shipment in time; retry with the same idempotency key",
        Code.Unavailable,
        undefined,
        undefined,
        err,
      );
    }
  };
  const respond = (rec: ShipmentRecord, replayed: boolean) =>
    create(CreateShipmentResponseSchema, {
      trackingNumber: rec.trackingNumber,
      shipmentId: rec.shipmentId,
      createdAt: timestampFromMs(rec.createdAtMs),
      replayed,
    });

  const partiesOf = (req: CreateShipmentRequest, shipmentId: string): ShipmentParties => ({
    shipmentId,
    carrier: req.carrierCode,
    partners: [...new Set(req.partnerCarrierCodes)].filter((c) => c !== req.carrierCode),
    customer: req.customerId,
  });
  /** Registers the shipment under `trackingNumber`; false when another shipment holds the number. */
  const register = async (trackingNumber: string, parties: ShipmentParties): Promise<boolean> => {
    try {
      return (await opts.directory.register(trackingNumber, parties)).shipmentId === parties.shipmentId;
    } catch (err) {
      if (!(err instanceof DirectoryUnavailableError)) throw err;
      throw new ConnectError(
        "the shipment directory did not answer in time; retry with the same idempotency key",
        Code.Unavailable,
        undefined,
        undefined,
        err,
      );
    }
  };

  const replay = async (req: CreateShipmentRequest, key: string, existing: ShipmentRecord, hash: string, eventId: string) => {
    if (existing.requestHash !== hash) {
      throw new ConnectError(
        "idempotency key was already used with different request fields",
        Code.FailedPrecondition,
      );
    }
    // The first attempt may have stopped before registering; registering again is a no-op.
    if (!(await register(existing.trackingNumber, partiesOf(req, existing.shipmentId)))) {
      throw new ConnectError(`tracking number ${existing.trackingNumber} belongs to another shipment`, Code.AlreadyExists);
    }
    if (!existing.published) {
      await publish(req, existing, eventId);
      await opts.store.update(key, { ...existing, published: true }).catch((e: unknown) => opts.onStoreError("idempotency_update", e));
    }
    return respond(existing, true);
  };

  return async (req, caller) => {
    const hash = createHash("sha256").update(toBinary(CreateShipmentRequestSchema, req)).digest("hex");
    const key = shipmentEventId(caller, req.idempotencyKey);
    const eventId = key;
    const shipmentId = shipmentIdFor(caller, req.idempotencyKey);
    const parties = partiesOf(req, shipmentId);

    let storeUp = true;
    try {
      const existing = await opts.store.get(key);
      if (existing) return await replay(req, key, existing, hash, eventId);
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      opts.onStoreError("idempotency", err);
      storeUp = false;
    }

    let trackingNumber = req.trackingNumber || assignedTrackingNumber(caller, req.idempotencyKey);
    let claimed = await register(trackingNumber, parties);
    for (let attempt = 1; !claimed && !req.trackingNumber && attempt < MAX_ASSIGN_ATTEMPTS; attempt++) {
      trackingNumber = assignedTrackingNumber(caller, req.idempotencyKey, attempt);
      claimed = await register(trackingNumber, parties);
    }
    if (!claimed) {
      throw new ConnectError(
        req.trackingNumber ? `tracking number ${req.trackingNumber} belongs to another shipment` : "no free tracking number could be assigned",
        req.trackingNumber ? Code.AlreadyExists : Code.Unavailable,
      );
    }
    let record: ShipmentRecord = { requestHash: hash, trackingNumber, shipmentId, createdAtMs: now(), published: false };

    if (storeUp) {
      try {
        const raced = await opts.store.reserve(key, record);
        if (raced) return await replay(req, key, raced, hash, eventId);
      } catch (err) {
        if (!(err instanceof StoreUnavailableError)) throw err;
        opts.onStoreError("idempotency", err);
        storeUp = false;
      }
    }

    await publish(req, record, eventId);
    if (storeUp) {
      record = { ...record, published: true };
      await opts.store.update(key, record).catch((e: unknown) => opts.onStoreError("idempotency_update", e));
    }
    return respond(record, false);
  };
}

/** Reads a ShipmentRecord back from JSON; undefined if it is not one. */
export function parseShipmentRecord(text: string): ShipmentRecord | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== "object" || v === null) return undefined;
  const o = v as Record<string, unknown>;
  if (
    typeof o["requestHash"] !== "string" ||
    typeof o["trackingNumber"] !== "string" ||
    typeof o["shipmentId"] !== "string" ||
    typeof o["createdAtMs"] !== "number" ||
    typeof o["published"] !== "boolean"
  ) {
    return undefined;
  }
  return {
    requestHash: o["requestHash"],
    trackingNumber: o["trackingNumber"],
    shipmentId: o["shipmentId"],
    createdAtMs: o["createdAtMs"],
    published: o["published"],
  };
}

