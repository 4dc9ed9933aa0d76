import { strict as assert } from "node:assert";
import { describe, it } from "vitest";
import { MsgHdrsImpl } from "@nats-io/transport-node";
import { EventHeaders, PROTOBUF_CONTENT_TYPE } from "./event-headers.js";
import { HeaderBlocks } from "./pipelined-publisher.js";

/** What MsgHdrs writes for an event's headers. */
function expected(trace: Record<string, string[]>, typeName: string, msgId: string): Uint8Array {
  return (
    MsgHdrsImpl.fromRecord({
      ...trace,
      [EventHeaders.ContentType]: [PROTOBUF_CONTENT_TYPE],
      [EventHeaders.MessageType]: [typeName],
      [EventHeaders.MsgId]: [msgId],
    }) as MsgHdrsImpl
  ).encode();
}

describe("HeaderBlocks", () => {
  it("writes each message's header block as MsgHdrs would, across types, chunks and non-ASCII ids", () => {
    const traces: Array<Record<string, string[]>> = [
      {},
      { traceparent: ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"] },
      { traceparent: ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"], tracestate: ["a=1,b=2"], baggage: ["k=v"] },
    ];
    for (const trace of traces) {
      // Told fewer messages than it gets: later chunks are sized from a wrong guess, still correct.
      const blocks = new HeaderBlocks(trace, 40);
      const written: Array<[Uint8Array, Uint8Array]> = [];
      // Enough messages to fill several chunks; the type changes now and then.
      for (let i = 0; i < 300; i++) {
        const typeName = i % 70 < 50 ? "logistics.events.v1.ScanRecorded" : "logistics.events.v1.ShipmentCreated";
        const msgId = i % 17 === 0 ? `ïd-✓-${i}` : `sc-0123456789abcdef0123456789abcd${i}`;
        written.push([blocks.block(typeName, msgId), expected(trace, typeName, msgId)]);
      }
      // Checked after all were written: a later block never overwrites an earlier one.
      written.forEach(([got, want], i) => assert.deepEqual(got, want, `${JSON.stringify(trace)} message ${i}`));
      const back = MsgHdrsImpl.decode((written[17] as [Uint8Array, Uint8Array])[0]);
      assert.equal(back.get(EventHeaders.MsgId), "ïd-✓-17");
    }
  });
});
