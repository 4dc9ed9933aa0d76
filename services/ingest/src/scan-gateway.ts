/**
 * The carrier-side half of the StreamScans contract, as a gateway should implement it: keep every
 * scan until it is acknowledged, and after a broken stream reconnect with backoff and resend every
 * unacknowledged scan with the same event id (the mesh answers scans it already stored with
 * DUPLICATE, so a resend is never applied twice).
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { status as GrpcStatus } from "@grpc/grpc-js";
import type { ScanSchema } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { RejectReason, ScanOutcome, type ScanAck } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { openScanStream, type ScanStream } from "./scan-client.js";

type ScanInit = MessageInitShape<typeof ScanSchema>;

/** Options for {@link createScanGateway}. */
export interface ScanGatewayOptions {
  /**
   * Ingest endpoints as `host:port`; a reconnect moves on to the next one. With several regions,
   * list the nearest region's first and then the others': when a region is lost its streams break
   * (or answer UNAVAILABLE) and the gateway resends every unacknowledged scan to the next region
   * with the same event id. Ids are deterministic (`recorded_event_id`), so a scan the lost region
   * had stored before its ack was lost is applied once everywhere (tracking is idempotent by id).
   */
  readonly addresses: readonly string[];
  /**
   * Bearer token with `scans:write` (and the carrier claim), or a function returning the current
   * one, called each time a stream is opened. A token is checked when a stream starts, and tokens
   * live at most JWT_MAX_LIFETIME_SECONDS (a day by default): a gateway that runs longer passes a
   * function that returns a token it renews in the background (at half its life, say). The
   * function returns at once and does not throw: the last token it got, while a renewal is under way.
   */
  readonly token: string | (() => string);
  /** Most scans in one request message (1 to 500). Default 50. */
  readonly maxBatch?: number;
  /** Most scans sent and not yet acknowledged. Default 1000. */
  readonly maxUnacked?: number;
  /** First reconnect delay; doubles per failed attempt up to `maxBackoffMs`, with full jitter. Default 100 ms. */
  readonly initialBackoffMs?: number;
  /** Longest reconnect delay. Default 5000 ms. */
  readonly maxBackoffMs?: number;
  /** A request message without its response after this long counts as a broken stream. Default 15 000 ms. */
  readonly ackTimeoutMs?: number;
  /** Reject reasons worth resending after a backoff. Default UNAVAILABLE and RATE_LIMITED. */
  readonly retryReasons?: ReadonlySet<RejectReason>;
  /**
   * How often a scan answered UNKNOWN_SHIPMENT by a failover endpoint (any but the first address)
   * is resent before that answer counts as final. After a failover the shipment may have been
   * created in the lost region, its directory entry not sourced here yet (docs/regions.md): such a
   * scan is held and resent after a backoff (`initialBackoffMs` doubling per resend up to
   * `maxBackoffMs`, jittered), so it is accepted once the entry arrives or the stream is back on
   * the first address. From the first address UNKNOWN_SHIPMENT is final at once. Default 30
   * (about two minutes with the default backoffs).
   */
  readonly unknownShipmentRetries?: number;
  /** Random numbers in [0, 1) for the jitter (seeded in tests). Default Math.random. */
  readonly random?: () => number;
  /** Opens a stream (tests pass a fake). Default {@link openScanStream}. */
  readonly openStream?: (address: string, token: string) => ScanStream;
  /** Sees every ack, final or not, with the time it arrived and the address that answered. */
  readonly onAck?: (ack: ScanAck, at: number, address: string) => void;
  /** Sees every broken stream: its gRPC status code name (or "TIMEOUT") and the address. */
  readonly onStreamError?: (code: string, address: string, at: number) => void;
}

/** A gateway holding scans until the mesh acknowledges them. */
export interface ScanGateway {
  /**
   * Hands a scan over; resolves with its final ack: ACCEPTED or DUPLICATE, or a REJECTED whose
   * reason a resend cannot fix. Retryable rejections and broken streams are retried inside.
   */
  submit(scan: ScanInit): Promise<ScanAck>;
  /** Scans handed over and not finally acknowledged yet. */
  readonly unacked: number;
  /** Streams opened so far (1 + reconnects). */
  readonly streamsOpened: number;
  /** Stops sending; scans not yet acknowledged reject. Idempotent. */
  close(): Promise<void>;
}

interface Entry {
  readonly scan: ScanInit;
  readonly resolve: (a: ScanAck) => void;
  readonly reject: (e: Error) => void;
  inFlight: boolean;
  /** Resends after UNKNOWN_SHIPMENT from a failover endpoint. */
  unknownRetries: number;
}

const DEFAULT_RETRY = new Set([RejectReason.UNAVAILABLE, RejectReason.RATE_LIMITED]);

/** The name of a grpc-js status code, e.g. "UNAVAILABLE". */
function codeName(e: unknown): string {
  const code = (e as { code?: unknown })?.code;
  if (typeof code === "number") {
    const name = (GrpcStatus as unknown as Record<number, string>)[code];
    if (name) return name;
  }
  return e instanceof Error && /ended by the server/.test(e.message) ? "ENDED" : "UNKNOWN";
}

/**
 * Creates a carrier gateway over StreamScans that never gives up on a scan it was handed: scans
 * go out in batches over one stream; a failed or silent stream is dropped, every scan on it that
 * was not acknowledged goes back to the front of the queue with its event id unchanged, and a new
 * stream (to the next address) is opened after an exponential backoff with full jitter (reset by
 * the next ack). Scans answered REJECTED with a retryable reason are resent the same way; a
 * replica that answers two whole batches in a row UNAVAILABLE is left for the next address.
 * UNKNOWN_SHIPMENT from a failover address is held and resent (see `unknownShipmentRetries`).
 */
export function createScanGateway(o: ScanGatewayOptions): ScanGateway {
  if (o.addresses.length === 0) throw new Error("createScanGateway: no ingest address");
  const maxBatch = Math.min(500, Math.max(1, o.maxBatch ?? 50));
  const maxUnacked = o.maxUnacked ?? 1000;
  const initial = o.initialBackoffMs ?? 100;
  const maxBackoff = o.maxBackoffMs ?? 5000;
  const ackTimeout = o.ackTimeoutMs ?? 15_000;
  const retry = o.retryReasons ?? DEFAULT_RETRY;
  const random = o.random ?? Math.random;
  const unknownRetries = o.unknownShipmentRetries ?? 30;
  const open = o.openStream ?? ((address, token) => openScanStream({ address, token }));
  const queue: Entry[] = [];
  /** Scans held after UNKNOWN_SHIPMENT from a failover endpoint, each with its resend timer. */
  const held = new Map<Entry, NodeJS.Timeout>();
  let inFlight = 0;
  let stream: ScanStream | undefined;
  let addressIndex = 0;
  let failures = 0;
  let unavailableStreak = 0;
  let opened = 0;
  let waitUntil = 0;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  let pumping = false;

  const backoff = () => {
    const cap = Math.min(maxBackoff, initial * 2 ** Math.min(failures, 20));
    failures++;
    return Math.round(random() * cap);
  };
  const schedule = (delayMs: number) => {
    waitUntil = Math.max(waitUntil, Date.now() + delayMs);
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      // Timers run on a monotonic clock and can fire a millisecond before Date.now() reaches
      // waitUntil; the wait is over all the same (a later schedule would have replaced this timer).
      waitUntil = Math.min(waitUntil, Date.now());
      pump();
    }, Math.max(0, waitUntil - Date.now()));
  };
  const requeue = (batch: Entry[]) => {
    for (const e of batch) e.inFlight = false;
    if (closed) {
      const err = new Error("scan gateway closed before the scan was acknowledged");
      for (const e of batch) e.reject(err);
    } else queue.unshift(...batch);
  };
  /** Drops a broken stream once (its other pending batches fail the same way and only requeue). */
  const breakStream = (s: ScanStream, code: string, address: string) => {
    if (stream !== s) return pump();
    o.onStreamError?.(code, address, Date.now());
    stream = undefined;
    addressIndex = (addressIndex + 1) % o.addresses.length;
    void s.close().catch(() => {});
    schedule(backoff());
  };

  /** True when `ack` may only mean the shipment's directory entry has not reached this region yet. */
  const mayBeUnsourced = (ack: ScanAck, address: string, e: Entry) =>
    ack.outcome === ScanOutcome.REJECTED &&
    ack.rejectReason === RejectReason.UNKNOWN_SHIPMENT &&
    address !== o.addresses[0] &&
    e.unknownRetries < unknownRetries;
  /** Holds `e` and queues it again after its own backoff; the rest of the queue goes on meanwhile. */
  const hold = (e: Entry) => {
    const cap = Math.min(maxBackoff, initial * 2 ** Math.min(e.unknownRetries++, 20));
    const timer = setTimeout(() => {
      held.delete(e);
      queue.push(e);
      pump();
    }, Math.round(cap / 2 + (random() * cap) / 2));
    held.set(e, timer);
  };

  const sendBatch = (s: ScanStream, address: string, batch: Entry[]) => {
    inFlight += batch.length;
    let settled = false;
    const watchdog = setTimeout(() => {
      if (settled) return;
      settled = true;
      inFlight -= batch.length;
      requeue(batch);
      breakStream(s, "TIMEOUT", address);
    }, ackTimeout);
    s.send(batch.map((e) => e.scan)).then(
      (acks) => {
        if (settled) return;
        settled = true;
        clearTimeout(watchdog);
        inFlight -= batch.length;
        const now = Date.now();
        const again: Entry[] = [];
        batch.forEach((e, i) => {
          const ack = acks[i]!;
          o.onAck?.(ack, now, address);
          if (ack.outcome === ScanOutcome.REJECTED && retry.has(ack.rejectReason)) again.push(e);
          else if (mayBeUnsourced(ack, address, e)) hold(e);
          else e.resolve(ack);
        });
        // A replica that answers a whole batch UNAVAILABLE twice in a row is likely cut off from
        // JetStream (its own connection is on a partitioned or dead server): move to the next one.
        const allUnavailable = acks.length > 0 && acks.every((a) => a.outcome === ScanOutcome.REJECTED && a.rejectReason === RejectReason.UNAVAILABLE);
        unavailableStreak = allUnavailable ? unavailableStreak + 1 : 0;
        if (again.length > 0) {
          requeue(again);
          if (unavailableStreak >= 2 && o.addresses.length > 1) {
            unavailableStreak = 0;
            return breakStream(s, "REJECTED_UNAVAILABLE", address);
          }
          schedule(backoff());
        } else failures = 0;
        pump();
      },
      (err: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(watchdog);
        inFlight -= batch.length;
        requeue(batch);
        breakStream(s, codeName(err), address);
      },
    );
  };

  function pump(): void {
    if (closed || pumping || timer) return;
    pumping = true;
    try {
      while (queue.length > 0 && inFlight < maxUnacked && Date.now() >= waitUntil) {
        if (stream?.closed) {
          // Ended under us: its pending sends fail and break it with their code; a stream that
          // ended with nothing pending is broken here.
          if (inFlight === 0) breakStream(stream, "CLOSED", o.addresses[addressIndex]!);
          return;
        }
        if (!stream) {
          opened++;
          stream = open(o.addresses[addressIndex]!, typeof o.token === "function" ? o.token() : o.token);
        }
        const s = stream;
        const address = o.addresses[addressIndex]!;
        const batch = queue.splice(0, Math.min(maxBatch, maxUnacked - inFlight));
        for (const e of batch) e.inFlight = true;
        sendBatch(s, address, batch);
      }
    } finally {
      pumping = false;
    }
  }

  return {
    submit(scan) {
      if (closed) return Promise.reject(new Error("scan gateway is closed"));
      return new Promise<ScanAck>((resolve, reject) => {
        queue.push({ scan, resolve, reject, inFlight: false, unknownRetries: 0 });
        pump();
      });
    },
    get unacked() {
      return queue.length + inFlight + held.size;
    },
    get streamsOpened() {
      return opened;
    },
    async close() {
      if (closed) return;
      closed = true;
      if (timer) clearTimeout(timer);
      const err = new Error("scan gateway closed before the scan was acknowledged");
      for (const e of queue.splice(0)) e.reject(err);
      for (const [e, t] of held) {
        clearTimeout(t);
        e.reject(err);
      }
      held.clear();
      await stream?.close().catch(() => {});
    },
  };
}
