import * as assert from "node:assert/strict";
import { describe, it } from "vitest";
import { newRunRecord, type AckRecord, type RunRecord } from "./carriers.js";
import { check, modelStatus, type FinalState, type HistoryScan, type WebhookSeen } from "./checker.js";
import { faultFigures } from "./figures.js";

/** One shipment with scans PU, AR, OD, DL at t = 1..4 s, all acknowledged ACCEPTED at 1.1..4.1 s. */
function recorded(): RunRecord {
  const r = newRunRecord();
  r.shipments.set("TN00000001", "acme");
  ["PU", "AR", "OD", "DL"].forEach((code, i) => {
    const eventId = `TN00000001-${i}`;
    r.sent.set(eventId, { eventId, carrier: "acme", trackingNumber: "TN00000001", code, hubCode: code === "AR" ? "FRA" : "", eventTimeMs: 1000 * (i + 1), firstSentAt: 1000 * (i + 1) });
    r.acks.push({ eventId, outcome: "ACCEPTED", reason: "", at: 1000 * (i + 1) + 100 });
  });
  return r;
}
const history = (r: RunRecord): HistoryScan[] => [...r.sent.values()].map((s) => ({ eventId: `rec-${s.eventId}`, code: s.code, hubCode: s.hubCode, eventTimeMs: s.eventTimeMs }));
const chain: WebhookSeen[] = [
  { id: "w1", trackingNumber: "TN00000001", version: 2, previousStatus: "info_received", status: "in_transit" },
  { id: "w2", trackingNumber: "TN00000001", version: 4, previousStatus: "in_transit", status: "out_for_delivery" },
  { id: "w3", trackingNumber: "TN00000001", version: 5, previousStatus: "out_for_delivery", status: "delivered" },
];
const state = (r: RunRecord, over: Partial<FinalState> = {}): FinalState => ({
  history: new Map([["TN00000001", history(r)]]),
  status: new Map([["TN00000001", "delivered"]]),
  webhooks: chain,
  deadLetters: 0,
  ...over,
});

describe("chaos checker", () => {
  it("passes a run whose final state matches what the carriers were told, counting webhook redeliveries as allowed", () => {
    const r = recorded();
    const rep = check(r, state(r, { webhooks: [...chain, chain[1]!] }), 0);
    assert.equal(rep.ok, true, JSON.stringify(rep));
    assert.equal(rep.webhooks.redeliveries, 1);
  });

  it("reports an acknowledged scan missing from the history as lost", () => {
    const r = recorded();
    const rep = check(r, state(r, { history: new Map([["TN00000001", history(r).filter((h) => h.code !== "AR")]]) }), 0);
    assert.equal(rep.ok, false);
    assert.deepEqual(rep.lost, ["TN00000001-1"]);
  });

  it("reports a scan shown twice as applied twice, and one no carrier sent as unknown", () => {
    const r = recorded();
    const h = history(r);
    const rep = check(r, state(r, { history: new Map([["TN00000001", [...h, h[0]!, { eventId: "x", code: "EX", hubCode: "", eventTimeMs: 9 }]]]) }), 0);
    assert.deepEqual(rep.appliedTwice, ["TN00000001-0"]);
    assert.equal(rep.unknownVisible, 1);
    assert.equal(rep.ok, false);
  });

  it("allows a visible scan acknowledged only as DUPLICATE, but not one never acknowledged", () => {
    const r = recorded();
    const acks = r.acks as AckRecord[];
    acks[0] = { ...acks[0]!, outcome: "DUPLICATE" };
    assert.equal(check(r, state(r), 0).visibleAckedOnlyAsDuplicate, 1);
    assert.equal(check(r, state(r), 0).ok, true);
    acks.splice(0, 1);
    const rep = check(r, state(r), 0);
    assert.deepEqual(rep.visibleNeverAcked, ["TN00000001-0"]);
    assert.equal(rep.ok, false);
  });

  it("compares each status with its own sequential model and finds webhook gaps and double events", () => {
    const r = recorded();
    assert.equal(modelStatus([...r.sent.values()]), "delivered");
    assert.equal(modelStatus([{ code: "DL", eventTimeMs: 1, eventId: "a" }, { code: "AR", eventTimeMs: 2, eventId: "b" }]), "delivered", "nothing after a terminal status");
    const wrong = check(r, state(r, { status: new Map([["TN00000001", "out_for_delivery"]]) }), 0);
    assert.deepEqual(wrong.statusMismatches, [{ trackingNumber: "TN00000001", model: "delivered", actual: "out_for_delivery" }]);
    const gap = check(r, state(r, { webhooks: [chain[0]!, chain[2]!] }), 0);
    assert.equal(gap.webhooks.missing.length, 1);
    const twice = check(r, state(r, { webhooks: [...chain, { ...chain[1]!, id: "w2b" }] }), 0);
    assert.deepEqual(twice.webhooks.duplicated, [{ trackingNumber: "TN00000001", version: 4 }]);
    assert.equal(check(r, state(r), 3).ok, false, "scans still unacknowledged at the end fail the run");
    assert.equal(check(r, state(r, { deadLetters: 2 }), 0).ok, false, "dead letters fail the run");
  });

  it("measures recovery, the longest ack gap and carrier errors of a fault window", () => {
    const r = recorded();
    r.streamErrors.push({ code: "UNAVAILABLE", carrier: "acme", at: 1500 });
    const f = faultFigures(r, [{ at: 1600, total: 40, perConsumer: {}, ackPending: {} }, { at: 2600, total: 3, perConsumer: {}, ackPending: {} }], { name: "x", detail: "", injectedAt: 1050, healedAt: 1500, windowEnd: 4500 }, 5);
    assert.equal(f.recoverMs, 2100 - 1050, "the first scan sent after the injection (t=2 s) was acknowledged at 2.1 s");
    assert.equal(f.longestAckGapMs, 1000, "acks every second from 1.1 s to 4.1 s");
    assert.deepEqual(f.carrierErrors, { "stream UNAVAILABLE": 1 });
    assert.equal(f.lagPeak, 40);
    assert.equal(f.drainMs, 1000);
  });
});
