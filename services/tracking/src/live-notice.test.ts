import * as assert from "node:assert/strict";
import { describe, it } from "vitest";
import { commitAll, journey, type Commit } from "../test/live-changes.js";
import { create } from "@bufbuild/protobuf";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import { decodeNotice, encodeNotice, localNotice, noticeChange } from "./live-notice.js";

const TN = "TN00000001";
const encoder = new TextEncoder();

/** The notice the projector sends after `commit`. */
const noticeOf = (c: Commit, maxBytes?: number) => encodeNotice(c.doc.version, noticeChange(c.doc, c.applied), maxBytes);

describe("live notices", () => {
  const [first, second] = commitAll([journey(TN, 1), journey(TN, 4).slice(2)]) as [Commit, Commit];

  it("carry the document and every event applied since the version before, as the store wrote them", () => {
    const notice = decodeNotice(TN, noticeOf(second));
    assert.equal(notice.version, 5);
    assert.deepEqual(notice.change?.doc, JSON.parse(JSON.stringify(second.doc)));
    assert.deepEqual(
      notice.change?.events.map((e) => [e.eventId, e.trackingNumber, e.late, e.appliedAt.seconds]),
      second.applied.map(({ event, result }) => [event.message.eventId, TN, result.late, BigInt(result.stored!.appliedAt.getTime() / 1000)]),
    );
    assert.deepEqual(
      notice.change?.events.map((e) => e.event),
      second.applied.map(({ event }) => event),
    );
    assert.equal(decodeNotice(TN, noticeOf(first)).change?.events.length, 2);
  });

  it("taken in process: the document object the projector wrote, and the events as the wire (and the history) gives them", () => {
    const local = localNotice(5, noticeChange(second.doc, second.applied));
    assert.equal(local.change?.doc, second.doc, "the same object: what was rendered from it is shared");
    assert.deepEqual(local.change?.events, decodeNotice(TN, noticeOf(second)).change?.events);
    assert.deepEqual(localNotice(5), { version: 5 });

    // A time proto JSON cannot write is cleared in the history row: the local event is the row's.
    const events = journey(TN, 2);
    const last = events[events.length - 1]!;
    if (last.type !== "scan.recorded") throw new Error("the journey ends with a scan");
    last.message.recordedAt = create(TimestampSchema, { seconds: 10n ** 12n });
    const [odd] = commitAll([events]) as [Commit];
    const change = noticeChange(odd.doc, odd.applied);
    const fromWire = decodeNotice(TN, encodeNotice(odd.doc.version, change)).change?.events;
    const inProcess = localNotice(odd.doc.version, change).change?.events;
    assert.ok(fromWire && inProcess);
    assert.deepEqual(inProcess, fromWire);
    const lastEvent = inProcess.at(-1)?.event;
    assert.ok(lastEvent?.type === "scan.recorded" && lastEvent.message.recordedAt === undefined, "the unwritable time is cleared");
  });

  it("carry the change of a shipment's earlier version in a merged apply, whose document JSON the store did not report", () => {
    // One apply merged two batches with events of this shipment: only its last result carries
    // the document JSON the store wrote; the first batch's notice serializes its document.
    const earlier = second.applied.map(({ event, result }) => ({ event, result: { ...result, stored: { ...result.stored!, docJson: undefined } } }));
    const change = noticeChange(second.doc, earlier);
    assert.ok(change, "the change is carried, not the version alone");
    assert.equal(change.docJson, undefined);
    assert.deepEqual(decodeNotice(TN, encodeNotice(second.doc.version, change)), decodeNotice(TN, noticeOf(second)));
    assert.equal(localNotice(5, change).change?.doc, second.doc);
  });

  it("announce the version alone when the change is over the size limit or its writes are not known", () => {
    const big = noticeOf(second, 200);
    assert.equal(new TextDecoder().decode(big), "5");
    assert.deepEqual(decodeNotice(TN, big), { version: 5 });
    const unreported = second.applied.map(({ event, result }) => ({ event, result: { ...result, stored: undefined } }));
    assert.equal(noticeChange(second.doc, unreported), undefined);
    assert.equal(noticeChange(first.doc, second.applied), undefined, "results that do not end at the document");
  });

  it("carry the change of a document trimmed to its size limit, checked against the event ids it still lists", () => {
    const events = journey(TN, 399);
    const groups = Array.from({ length: 100 }, (_, i) => events.slice(i * 4, i * 4 + 4));
    const last = commitAll(groups, { maxBytes: 12_000 }).at(-1) as Commit;
    const dropped = last.doc.derivation.trimmed?.ids ?? 0;
    assert.ok(dropped > 0, "the test's document dropped event ids");
    const notice = decodeNotice(TN, noticeOf(last));
    assert.equal(notice.version, 400);
    assert.deepEqual(
      notice.change?.events.map((e) => e.eventId),
      events.slice(-4).map((e) => e.message.eventId),
    );
    const text = new TextDecoder().decode(noticeOf(last));
    assert.ok(text.includes(`"ids":${dropped},`));
    for (const forged of [dropped + 1, dropped - 1, 0, -1]) {
      assert.deepEqual(decodeNotice(TN, encoder.encode(text.replace(`"ids":${dropped},`, `"ids":${forged},`))), { version: 400 }, `ids ${forged}`);
    }
  });

  it("keep only the version of a change that does not check out, and nothing of unreadable text", () => {
    const text = new TextDecoder().decode(noticeOf(second));
    const variants = [
      text.replace(`"trackingNumber":"${TN}"`, `"trackingNumber":"TN00000002"`),
      // An event the document does not name at that version.
      text.slice(0, text.indexOf(`"events":`)) + text.slice(text.indexOf(`"events":`)).replaceAll(`${TN}-3`, `${TN}-x`),
      text.replace(`"late":false`, `"late":"no"`),
      text.replace(`"type":"scan.recorded"`, `"type":"scan.deleted"`),
      text.replace(`"events":[`, `"events":[1,`),
    ];
    for (const v of variants) assert.deepEqual(decodeNotice(TN, encoder.encode(v)), { version: 5 }, v.slice(0, 80));
    assert.deepEqual(decodeNotice("TN00000002", noticeOf(second)), { version: 5 }, "a notice of another shipment");
    for (const v of ["", "abc", "-1", "1.5", `{"version":5,"doc":`, `{"version":"5"}`, "[5]"]) assert.deepEqual(decodeNotice(TN, encoder.encode(v)), {}, v);
    assert.deepEqual(decodeNotice(TN, encoder.encode("12")), { version: 12 }, "a version-only notice, as older projectors send");
  });
});
