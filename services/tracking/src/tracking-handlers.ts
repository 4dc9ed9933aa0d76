import { createHash } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { principalKey } from "@logistics/shared/auth";
import {
  GetShipmentResponseSchema,
  ListShipmentEventsResponseSchema,
  SearchShipmentsResponseSchema,
  WatchShipmentResponseSchema,
  WatchUpdateKind,
  type TrackingService,
} from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { drainOf, drainSignalKey } from "@logistics/shared/server";
import { StoreError } from "./store/errors.js";
import type { ShipmentDoc, ShipmentQuery, ShipmentStore } from "./store/ports.js";
import type { LiveHub } from "./live-updates.js";
import { createWatchFeeds, type WatchFeed, type WatchFeeds } from "./watch-feed.js";
import { createWatchMessages, type ShipmentMessages } from "./watch-messages.js";
import { HistoryGapError, VersionsTrimmedError, type VersionStep } from "./shipment-history.js";
import type { ShipmentReader } from "./shipment-reader.js";
import { isPublicEvent, publicShipment, publicShipmentEvent, shipmentEventMessage, shipmentMessage } from "./shipment-view.js";
import { setReadCaching, type ReadCachePolicy } from "./read-caching.js";
import { searchCustomerFor, shipmentViewFor, viewDependsOnOwner } from "./tracking-access.js";
import type { TrackingMetrics } from "./tracking-metrics.js";

/** The RPC handlers; methods not implemented yet answer Unimplemented. */
export type TrackingHandlers = Partial<ServiceImpl<typeof TrackingService>>;

/** Dependencies of the tracking handlers (narrow interfaces, built by tracking.ts). */
export interface TrackingHandlersDeps {
  store: Pick<ShipmentStore, "getShipment" | "listEvents" | "searchShipments">;
  /** Current shipments, cache first (GetShipment). */
  reader: ShipmentReader;
  /** Cross-replica change notices; without it watchers only see changes on their periodic re-read. */
  live?: LiveHub;
  metrics: Pick<TrackingMetrics, "watchers" | "watchNotices" | "watchCreationWaits">;
  /** Idle time after which a watch stream gets a heartbeat (and re-reads the store). Default 15 000 ms. */
  heartbeatMs?: number;
  /** A watch stream ends with OK after this long (clients resume). Default 30 minutes. */
  maxStreamLifetimeMs?: number;
  /**
   * How long a watch of a tracking number the read model does not hold yet waits for the
   * shipment's creation before NotFound (0: NotFound at once). Default 2,000 ms.
   */
  creationGraceMs?: number;
  /** HTTP caching of GetShipment / ListShipmentEvents answers. Default max-age 5 s, stale 30 s. */
  readCache?: ReadCachePolicy;
  /** What the watchers of one shipment share (notices, reads, versions). Default: over `store` and `live`. */
  feeds?: WatchFeeds;
  /** Renders a document's full Shipment for watchers; the projector's memo shares its cache refreshes. Default: a memo of its own. */
  shipmentMessages?: ShipmentMessages;
}

/** Page size when a request leaves it 0. */
export const DEFAULT_PAGE_SIZE = 50;

/** Maps store errors to Connect codes; the one place this happens. */
function toConnectError(err: unknown): unknown {
  if (err instanceof ConnectError) return err;
  if (err instanceof StoreError) {
    switch (err.code) {
      case "INVALID_EVENT":
      case "INVALID_QUERY":
        return new ConnectError(err.message, Code.InvalidArgument);
      case "DOCUMENT_TOO_LARGE":
        return new ConnectError(err.message, Code.ResourceExhausted);
      case "CONFLICT":
        return new ConnectError(err.message, Code.Aborted);
    }
  }
  if (err instanceof HistoryGapError) return new ConnectError(err.message, Code.Internal);
  return err;
}

async function mapped<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toConnectError(err);
  }
}

/** True when the caller may see the internal fields of a shipment of `customerId` (see tracking-access.ts). */
function fullAccess(ctx: HandlerContext, customerId: string | undefined): boolean {
  return shipmentViewFor(ctx.values.get(principalKey), customerId) === "full";
}

function notFound(trackingNumber: string): ConnectError {
  return new ConnectError(`no shipment with tracking number ${trackingNumber}`, Code.NotFound);
}

/**
 * Page tokens wrap the store's cursor with a digest of what the request was bound to (the
 * tracking number, or the search filters), so a token used with other parameters is rejected
 * with InvalidArgument instead of silently paging through something else.
 */
function digest(binding: unknown): string {
  return createHash("sha256").update(JSON.stringify(binding)).digest("base64url").slice(0, 16);
}

function encodePageToken(binding: unknown, cursor: string | undefined): string {
  return cursor === undefined ? "" : Buffer.from(JSON.stringify([digest(binding), cursor]), "utf8").toString("base64url");
}

function decodePageToken(binding: unknown, token: string): string | undefined {
  if (token === "") return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    parsed = undefined;
  }
  if (!Array.isArray(parsed) || parsed.length !== 2 || typeof parsed[1] !== "string" || parsed[0] !== digest(binding)) {
    throw new ConnectError("page_token is malformed or belongs to another request", Code.InvalidArgument);
  }
  return parsed[1];
}

/**
 * The versions after `from` up to `target` from the shipment's feed, or undefined when they can no
 * longer be rebuilt: the document was trimmed to its size limit and no longer lists the events
 * of those versions (shipment-history.ts). The watcher then gets `target` as a SNAPSHOT, which
 * replaces its state, rather than an error it would resume into again. A replay is lazy
 * (watch-feed.ts): the stream sends each step before it derives the next, and connect waits for
 * the client to take what was written, so a resume far behind holds one step, not every version.
 */
async function changesSince(feed: WatchFeed, from: ShipmentDoc | number, target: ShipmentDoc): Promise<Iterable<VersionStep> | undefined> {
  try {
    return await feed.steps(from, target);
  } catch (err) {
    if (err instanceof VersionsTrimmedError) return undefined;
    throw err;
  }
}

type WaitOutcome = "wake" | "timeout" | "abort";

/**
 * The waits of one watch stream: a wake-up (a notice), the heartbeat timeout (`heartbeatMs` after
 * the wait began) or the end of the stream, whichever comes first. Everything but the promise of
 * a wait is made once per stream: one timer re-armed at each wait, one resolver slot, so that a
 * message costs no timer, listener or closure of its own.
 */
class StreamWaits {
  private resolve: ((outcome: WaitOutcome) => void) | undefined;
  private ended = false;
  private heartbeat: NodeJS.Timeout | undefined;
  /** The period `heartbeat` was made with. */
  private armedMs = 0;
  private readonly capture = (resolve: (outcome: WaitOutcome) => void) => {
    this.resolve = resolve;
  };

  constructor(private readonly heartbeatMs: number) {}

  /** True once {@link end} was called. */
  get stopped(): boolean {
    return this.ended;
  }

  /**
   * Waits for the next outcome; "abort" at once when the stream has ended. The timeout is the
   * heartbeat period, or `timeoutMs` (the wait for a shipment's creation).
   */
  wait(timeoutMs = this.heartbeatMs): Promise<WaitOutcome> {
    if (this.ended) return Promise.resolve("abort");
    // A timer that fired while no wait was under way is armed again by `refresh` too.
    if (this.heartbeat === undefined || timeoutMs !== this.armedMs) {
      clearTimeout(this.heartbeat);
      this.armedMs = timeoutMs;
      this.heartbeat = setTimeout(() => this.settle("timeout"), Math.max(0, timeoutMs));
    } else this.heartbeat.refresh();
    return new Promise(this.capture);
  }

  /** Ends the wait under way, if any, with a wake-up. */
  wake(): void {
    this.settle("wake");
  }

  /** Ends the stream: the wait under way and every later one end with "abort". Idempotent. */
  end(): void {
    this.ended = true;
    clearTimeout(this.heartbeat);
    this.settle("abort");
  }

  private settle(outcome: WaitOutcome): void {
    const resolve = this.resolve;
    if (resolve === undefined) return;
    this.resolve = undefined;
    resolve(outcome);
  }
}

/** Creates the TrackingService handlers. */
export function createTrackingHandlers(deps: TrackingHandlersDeps): TrackingHandlers {
  const { store, reader, live, metrics } = deps;
  const heartbeatMs = deps.heartbeatMs ?? 15_000;
  const maxLifetimeMs = deps.maxStreamLifetimeMs ?? 30 * 60_000;
  const creationGraceMs = deps.creationGraceMs ?? 2_000;
  const readCache = deps.readCache ?? { maxAgeSeconds: 5, staleWhileRevalidateSeconds: 30 };
  const feeds = deps.feeds ?? createWatchFeeds({ store, metrics, ...(live ? { live } : {}) });
  const messages = createWatchMessages(deps.shipmentMessages);

  return {
    async getShipment(req, ctx) {
      const shipment = await mapped(() => reader.get(req.trackingNumber));
      if (!shipment) throw notFound(req.trackingNumber);
      const full = fullAccess(ctx, shipment.customerId || undefined);
      const res = create(GetShipmentResponseSchema, { shipment: full ? shipment : publicShipment(shipment) });
      setReadCaching(ctx, ctx.values.get(principalKey), shipment.version, toBinary(GetShipmentResponseSchema, res), readCache);
      return res;
    },

    async listShipmentEvents(req, ctx) {
      // The snapshot (cache first) gives the version for the ETag and, for a customer, the owner
      // that decides the view.
      const snapshot = await mapped(() => reader.get(req.trackingNumber));
      const principal = ctx.values.get(principalKey);
      const owner = viewDependsOnOwner(principal) ? (snapshot?.customerId ?? undefined) : undefined;
      const full = fullAccess(ctx, owner || undefined);
      const cursor = decodePageToken(["events", req.trackingNumber], req.pageToken);
      const page = await mapped(() =>
        store.listEvents(req.trackingNumber, { pageSize: req.pageSize || DEFAULT_PAGE_SIZE, ...(cursor ? { cursor } : {}) }),
      );
      if (page.items.length === 0 && cursor === undefined) throw notFound(req.trackingNumber);
      const res = create(ListShipmentEventsResponseSchema, {
        events: full
          ? page.items.map(shipmentEventMessage)
          : page.items.map(shipmentEventMessage).filter(isPublicEvent).map(publicShipmentEvent),
        nextPageToken: encodePageToken(["events", req.trackingNumber], page.nextCursor),
      });
      if (snapshot) setReadCaching(ctx, principal, snapshot.version, toBinary(ListShipmentEventsResponseSchema, res), readCache);
      return res;
    },

    async searchShipments(req, ctx) {
      const customerId = searchCustomerFor(ctx.values.get(principalKey), req.customerId);
      const filters = {
        ...(customerId ? { customerId } : {}),
        ...(req.carrierCode ? { carrierCode: req.carrierCode } : {}),
        ...(req.statuses.length > 0 ? { statuses: [...req.statuses] } : {}),
        ...(req.updatedAfter ? { updatedAfter: timestampDate(req.updatedAfter).toISOString() } : {}),
        ...(req.updatedBefore ? { updatedBefore: timestampDate(req.updatedBefore).toISOString() } : {}),
        ...(req.near
          ? { near: { lat: req.near.center?.latitude ?? 0, lon: req.near.center?.longitude ?? 0, radiusKm: req.near.radiusKm } }
          : {}),
      } satisfies Omit<ShipmentQuery, "pageSize" | "cursor">;
      // Checked here, not in the contract's validation: a customer token's empty customer_id is
      // its own account (searchCustomerFor), and only unpinned callers must narrow the search.
      if (!filters.customerId && !filters.carrierCode && !filters.near) {
        throw new ConnectError("at least one of customer_id, carrier_code or near must be set", Code.InvalidArgument);
      }
      const cursor = decodePageToken(["search", filters], req.pageToken);
      const page = await mapped(() =>
        store.searchShipments({ ...filters, pageSize: req.pageSize || DEFAULT_PAGE_SIZE, ...(cursor ? { cursor } : {}) }),
      );
      return create(SearchShipmentsResponseSchema, {
        shipments: page.items.map((d) => (fullAccess(ctx, d.customerId) ? shipmentMessage(d) : publicShipment(shipmentMessage(d)))),
        nextPageToken: encodePageToken(["search", filters], page.nextCursor),
      });
    },

    async *watchShipment(req, ctx) {
      const tn = req.trackingNumber;
      // Decided from the first read (a shipment's customer never changes).
      let full = false;
      // Ends on cancel, drain or lifetime. Built by hand so that a closed stream leaves nothing
      // behind: AbortSignal.timeout would keep a timer (and this stream) for the whole lifetime,
      // and the server's drain signal would keep a listener per stream ever opened. The drain is
      // joined through `drainOf`: every open watch listening on the signal itself made each
      // stream's start and end cost in proportion to the watches open.
      const waits = new StreamWaits(heartbeatMs);
      const end = () => waits.end();
      const lifetime = setTimeout(end, maxLifetimeMs);
      ctx.signal.addEventListener("abort", end, { once: true });
      const leaveDrain = drainOf(ctx.values.get(drainSignalKey)).onDrain(end);
      if (ctx.signal.aborted) end();

      // Everything goes through the shipment's feed, which listens for notices before the first
      // read (so no change between the read and the wait is missed) and takes in the changes
      // they carry: the watchers of a shipment share its notices, reads and rendered versions.
      let noticed = false;
      let noticedVersion = 0;
      const feed = feeds.join(tn, (version) => {
        noticed = true;
        noticedVersion = Math.max(noticedVersion, version);
        waits.wake();
      });
      const listeningSince = performance.now();
      metrics.watchers.inc();
      try {
        let state = await feed.current(0, listeningSince);
        if (!state && creationGraceMs > 0) {
          // Not in the read model yet. A client that watches right after CreateShipment races the
          // projector (tens of milliseconds apart, seconds under a backlog): the feed listens
          // already, so the creation's notice ends the wait; one read at the deadline covers a
          // lost notice. A tracking number nobody created costs the caller the grace period.
          const deadline = performance.now() + creationGraceMs;
          for (;;) {
            const left = deadline - performance.now();
            const outcome = noticed ? "wake" : left > 0 ? await waits.wait(left) : "timeout";
            if (outcome === "abort") return;
            noticed = false;
            state = await (outcome === "wake" ? feed.current(noticedVersion) : feed.current(0, performance.now()));
            if (state || outcome === "timeout") break;
          }
          metrics.watchCreationWaits.inc({ outcome: state ? "appeared" : "not_found" });
        }
        if (!state) throw notFound(tn);
        full = fullAccess(ctx, state.customerId);
        const after = Number(req.afterSequence);
        if (after > state.version) {
          throw new ConnectError(`after_sequence ${req.afterSequence} is beyond the shipment's version ${state.version}`, Code.OutOfRange);
        }
        if (after === 0) {
          yield messages.snapshot(state, full);
        } else if (after < state.version) {
          const steps = await changesSince(feed, after, state);
          if (steps) for (const step of steps) yield messages.change(step, full);
          else yield messages.snapshot(state, full);
        }
        let last = state.version;

        while (!waits.stopped) {
          const outcome = noticed ? "wake" : await waits.wait();
          if (outcome === "abort") return;
          noticed = false;
          // A notice names the new version: the shared copy serves it once the feed took in the
          // notice's change or one watcher's read found it. A heartbeat re-read (a lost notice)
          // shares reads made within half a period.
          const current = await (outcome === "wake"
            ? feed.current(Math.max(noticedVersion, last))
            : feed.current(last, performance.now() - heartbeatMs / 2));
          if (current && current.version > last) {
            const steps = await changesSince(feed, state, current);
            if (steps) for (const step of steps) yield messages.change(step, full);
            else yield messages.snapshot(current, full);
            state = current;
            last = current.version;
          } else if (outcome === "timeout") {
            yield create(WatchShipmentResponseSchema, { sequence: BigInt(last), kind: WatchUpdateKind.HEARTBEAT });
          }
        }
      } catch (err) {
        // Store failures (the feed's reads) as Connect codes, as `mapped` does for the other methods.
        throw toConnectError(err);
      } finally {
        waits.end();
        clearTimeout(lifetime);
        ctx.signal.removeEventListener("abort", end);
        leaveDrain();
        feed.leave();
        metrics.watchers.dec();
      }
    },
  };
}
