/**
 * The chaos load: several carrier gateways, each streaming scans at a fixed rate over the
 * resilient gateway (`@logistics/ingest/gateway`: reconnect with backoff, resend every
 * unacknowledged scan with its event id), for shipments created as it goes. Everything sent and
 * every ack is written to a {@link RunRecord}, which the checker and the figures read; nothing
 * here inspects the mesh's state.
 */
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { IngestService, RejectReason, ScanOutcome } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { createScanGateway, type ScanGateway } from "@logistics/ingest/gateway";
import { shipmentTemplates, type ShipmentTemplate } from "../e2e/scenario.js";

/** One scan as the carrier sent it (the same scan on every resend). */
export interface SentScan {
  readonly eventId: string;
  readonly carrier: string;
  readonly trackingNumber: string;
  readonly code: string;
  readonly hubCode: string;
  readonly eventTimeMs: number;
  /** When it was first handed to the gateway (ms since the run's epoch). */
  readonly firstSentAt: number;
}

/** One ack the carrier received (every ack, also retryable rejections answered before a resend). */
export interface AckRecord {
  readonly eventId: string;
  readonly outcome: "ACCEPTED" | "DUPLICATE" | "REJECTED";
  readonly reason: string;
  readonly at: number;
}

/** Everything the carriers saw, in ms since `epoch` (performance.now() at the run's start). */
export interface RunRecord {
  readonly epoch: number;
  readonly sent: Map<string, SentScan>;
  readonly acks: AckRecord[];
  /** Broken streams: gRPC status code name (or TIMEOUT / CLOSED), carrier, time. */
  readonly streamErrors: Array<{ code: string; carrier: string; at: number }>;
  /** Shipments created (tracking number → carrier), and CreateShipment failures retried. */
  readonly shipments: Map<string, string>;
  readonly createErrors: Array<{ code: string; at: number }>;
  /** Scans whose final ack was a rejection a resend cannot fix (none expected). */
  readonly finalRejections: Array<{ eventId: string; reason: string }>;
  /** Ticks of the fixed rate that found no scan ready (a shipment still being created). */
  skippedTicks: number;
}

export function newRunRecord(): RunRecord {
  return {
    epoch: performance.now(),
    sent: new Map(),
    acks: [],
    streamErrors: [],
    shipments: new Map(),
    createErrors: [],
    finalRejections: [],
    skippedTicks: 0,
  };
}

/** Options for {@link startCarriers}. */
export interface CarrierLoadOptions {
  readonly record: RunRecord;
  /** Ingest replicas (`host:port`). */
  readonly ingest: readonly string[];
  /** Carrier codes, one gateway each. */
  readonly carriers: readonly string[];
  /** Scans per second per carrier. */
  readonly ratePerCarrier: number;
  /** Shipments each carrier moves at once. */
  readonly slots: number;
  /** Mints tokens: a carrier's scan token, and one with `shipments:write`. */
  readonly carrierToken: (carrier: string) => Promise<string>;
  readonly ordersToken: string;
  /** Distinguishes this run's tracking numbers (letters and digits). */
  readonly runTag: string;
  readonly random: () => number;
}

/** The running load. */
export interface CarrierLoad {
  /** Stops offering new scans; resolves when every scan handed over is finally acknowledged (or the deadline passes). */
  stop(drainTimeoutMs: number): Promise<{ unacked: number }>;
  /** Scans handed over and not finally acknowledged, over all carriers. */
  unacked(): number;
  close(): Promise<void>;
}

interface Slot {
  trackingNumber?: string;
  template?: ShipmentTemplate;
  next: number;
  creating: boolean;
}

/** Starts one gateway per carrier streaming at the fixed rate. */
export async function startCarriers(o: CarrierLoadOptions): Promise<CarrierLoad> {
  const rec = o.record;
  const now = () => performance.now() - rec.epoch;
  const templates = shipmentTemplates(Date.now());
  const ingestClients: Array<Client<typeof IngestService>> = o.ingest.map((a) =>
    createClient(IngestService, createGrpcTransport({ baseUrl: `http://${a}` })),
  );
  let shipmentCounter = 0;
  let stopping = false;
  const gateways: ScanGateway[] = [];
  const loops: Array<Promise<void>> = [];
  const outstanding = new Set<Promise<unknown>>();

  const createShipment = async (carrier: string, slot: Slot) => {
    slot.creating = true;
    const k = shipmentCounter++;
    const tn = `CX${o.runTag}${String(k).padStart(6, "0")}`.toUpperCase();
    const tpl = templates[Math.floor(o.random() * templates.length)]!;
    let delay = 100;
    for (let attempt = 0; !stopping; attempt++) {
      try {
        await ingestClients[attempt % ingestClients.length]!.createShipment(
          {
            idempotencyKey: `chaos-${tn}`,
            trackingNumber: tn,
            carrierCode: carrier,
            customerId: "chaos-shop",
            serviceLevel: tpl.serviceLevel,
            origin: tpl.lane.origin,
            destination: tpl.lane.destination,
            parcel: { weightGrams: 1000, lengthMm: 300, widthMm: 200, heightMm: 150 },
            readyTime: timestampFromMs(tpl.readyAtMs),
          },
          { headers: { authorization: `Bearer ${o.ordersToken}` }, timeoutMs: 10_000 },
        );
        rec.shipments.set(tn, carrier);
        slot.trackingNumber = tn;
        slot.template = tpl;
        slot.next = 0;
        break;
      } catch (e) {
        const code = (e as { code?: number }).code;
        rec.createErrors.push({ code: code === undefined ? "UNKNOWN" : String(code), at: now() });
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(2000, delay * 2);
      }
    }
    slot.creating = false;
  };

  for (const carrier of o.carriers) {
    const gw = createScanGateway({
      addresses: o.ingest,
      token: await o.carrierToken(carrier),
      maxBatch: 20,
      random: o.random,
      onAck: (ack) => {
        rec.acks.push({
          eventId: ack.eventId,
          outcome: ScanOutcome[ack.outcome] as AckRecord["outcome"],
          reason: ack.outcome === ScanOutcome.REJECTED ? RejectReason[ack.rejectReason] ?? String(ack.rejectReason) : "",
          at: now(),
        });
      },
      onStreamError: (code) => rec.streamErrors.push({ code, carrier, at: now() }),
    });
    gateways.push(gw);
    const slots: Slot[] = Array.from({ length: o.slots }, () => ({ next: 0, creating: false }));
    for (const s of slots) void createShipment(carrier, s);
    const interval = 1000 / o.ratePerCarrier;
    let rr = 0;
    loops.push(
      (async () => {
        const t0 = performance.now();
        for (let n = 0; !stopping; n++) {
          const wait = t0 + n * interval - performance.now();
          if (wait > 1) await new Promise((r) => setTimeout(r, wait));
          if (stopping) break;
          // The next slot (round robin) with a scan ready.
          let slot: Slot | undefined;
          for (let i = 0; i < slots.length && !slot; i++) {
            const s = slots[(rr + i) % slots.length]!;
            if (s.trackingNumber && s.template && !s.creating && s.next < s.template.scans.length) slot = s;
          }
          rr++;
          if (!slot) {
            rec.skippedTicks++;
            continue;
          }
          const step = slot.template!.scans[slot.next]!;
          const eventId = `${slot.trackingNumber}-${slot.next}`;
          slot.next++;
          const sent: SentScan = {
            eventId,
            carrier,
            trackingNumber: slot.trackingNumber!,
            code: step.code,
            hubCode: step.hubCode ?? "",
            eventTimeMs: step.eventTimeMs,
            firstSentAt: now(),
          };
          rec.sent.set(eventId, sent);
          const p = gw
            .submit({
              eventId,
              trackingNumber: sent.trackingNumber,
              carrierCode: carrier,
              rawStatus: { code: step.code, text: step.text },
              eventTime: timestampFromMs(step.eventTimeMs),
              hubCode: sent.hubCode,
              ...(step.location ? { location: step.location } : {}),
            })
            .then(
              (ack) => {
                if (ack.outcome === ScanOutcome.REJECTED) rec.finalRejections.push({ eventId, reason: RejectReason[ack.rejectReason] ?? "" });
              },
              () => {},
            );
          outstanding.add(p);
          void p.finally(() => outstanding.delete(p));
          if (slot.next >= slot.template!.scans.length) void createShipment(carrier, slot);
        }
      })(),
    );
  }

  const unacked = () => gateways.reduce((n, g) => n + g.unacked, 0);
  return {
    unacked,
    async stop(drainTimeoutMs) {
      stopping = true;
      await Promise.all(loops);
      const deadline = performance.now() + drainTimeoutMs;
      while (unacked() > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      return { unacked: unacked() };
    },
    async close() {
      stopping = true;
      await Promise.all(gateways.map((g) => g.close()));
      await Promise.allSettled([...outstanding]);
    },
  };
}
