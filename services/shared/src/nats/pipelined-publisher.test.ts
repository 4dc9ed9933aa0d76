import { strict as assert } from "node:assert";
import { describe, it } from "vitest";
import { MsgHdrsImpl } from "@nats-io/transport-node";
import { EventHeaders, PROTOBUF_CONTENT_TYPE } from "./event-headers.js";
import { headerTextBeforeMsgId } from "./pipelined-publisher.js";

describe("headerTextBeforeMsgId", () => {
  it("with the id and the blank line is what MsgHdrs writes for the same headers", () => {
    const cases: Array<Record<string, string[]>> = [
      {},
      { traceparent: ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"] },
      { traceparent: ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"], tracestate: ["a=1,b=2"], baggage: ["k=v"] },
    ];
    for (const trace of cases) {
      const typeName = "logistics.events.v1.ScanRecorded";
      const msgId = "sc-0123456789abcdef0123456789abcdef";
      const expected = (MsgHdrsImpl.fromRecord({
        ...trace,
        [EventHeaders.ContentType]: [PROTOBUF_CONTENT_TYPE],
        [EventHeaders.MessageType]: [typeName],
        [EventHeaders.MsgId]: [msgId],
      }) as MsgHdrsImpl).encode();
      const text = `${headerTextBeforeMsgId(trace, typeName)}${msgId}\r\n\r\n`;
      assert.deepEqual(new TextEncoder().encode(text), expected, JSON.stringify(trace));
      // And nats.js reads it back as those headers.
      const back = MsgHdrsImpl.decode(expected);
      assert.equal(back.get(EventHeaders.MsgId), msgId);
      assert.equal(back.get(EventHeaders.MessageType), typeName);
    }
  });
});
