import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import type { EventPublisher } from "@logistics/shared/nats";
import { withoutPartner, withPartner, type ShipmentParties } from "../src/scan-ownership.js";
import { PartnerChangeRefusedError, type HandOverResult, type ShipmentDirectory } from "../src/shipment-directory.js";

/**
 * A shipment directory of our own holding one entry (`trackingNumber`), changed the way the KV
 * directory changes it: `authorize` sees the current parties first, then the partner is added
 * or removed (scan-ownership.ts). `down` makes every change fail as the KV directory does when
 * NATS does not answer.
 */
export function memoryPartners(
  trackingNumber: string,
  parties: ShipmentParties,
): Pick<ShipmentDirectory, "addPartner" | "removePartner"> & { entry: ShipmentParties; down: Error | undefined } {
  const change = async (
    tn: string,
    authorize: (current: ShipmentParties) => void,
    next: (current: ShipmentParties) => ShipmentParties | "unchanged",
  ): Promise<HandOverResult | undefined> => {
    if (self.down) throw self.down;
    if (tn !== trackingNumber) return undefined;
    authorize(self.entry);
    const updated = next(self.entry);
    if (updated === "unchanged") return { parties: self.entry, changed: false };
    self.entry = updated;
    return { parties: updated, changed: true };
  };
  const self = {
    entry: parties,
    down: undefined as Error | undefined,
    addPartner: (tn: string, partner: string, authorize: (current: ShipmentParties) => void) =>
      change(tn, authorize, (current) => {
        const next = withPartner(current, partner);
        if (next === "full") throw new PartnerChangeRefusedError("full");
        return next;
      }),
    removePartner: (tn: string, partner: string, authorize: (current: ShipmentParties) => void) =>
      change(tn, authorize, (current) => withoutPartner(current, partner)),
  };
  return self;
}

/**
 * A publisher of our own interface that keeps every event it is given, with its subject and
 * message id, in order (`fail` makes it throw instead, as a publish without a PubAck does).
 */
export function recordingPublisher<M>(): Pick<EventPublisher, "publish"> & {
  published: M[];
  sent: Array<{ subject: string; msgId: string }>;
  fail: boolean;
} {
  const self = {
    published: [] as M[],
    sent: [] as Array<{ subject: string; msgId: string }>,
    fail: false,
    async publish<D extends DescMessage>(subject: string, _schema: D, message: MessageShape<D>, opts?: { msgId?: string }) {
      if (self.fail) throw new Error("timeout waiting for the PubAck");
      self.published.push(message as M);
      self.sent.push({ subject, msgId: opts?.msgId ?? "" });
      return { seq: self.published.length, duplicate: false, stream: "SHIPMENTS" };
    },
  };
  return self;
}
