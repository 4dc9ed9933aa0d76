import * as assert from "node:assert/strict";
import { describe, it } from "vitest";
import { Metadata } from "@grpc/grpc-js";
import { grpcMetadataCarrier, headersCarrier } from "./trace-carriers.js";

describe("grpcMetadataCarrier", () => {
  it("sets and reads text entries whatever the key's case, ignoring binary values", () => {
    const md = new Metadata();
    grpcMetadataCarrier.set(md, "Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    md.set("tracestate-bin", Buffer.from("x"));
    assert.equal(grpcMetadataCarrier.get(md, "traceparent"), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    assert.equal(grpcMetadataCarrier.get(md, "TRACEPARENT"), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    assert.equal(grpcMetadataCarrier.get(md, "tracestate-bin"), undefined);
    assert.equal(grpcMetadataCarrier.get(md, "baggage"), undefined);
    assert.deepEqual(grpcMetadataCarrier.keys(md).sort(), ["traceparent", "tracestate-bin"]);
  });
});

describe("headersCarrier", () => {
  it("sets and reads headers case-insensitively", () => {
    const headers = new Headers();
    headersCarrier.set(headers, "traceparent", "v");
    assert.equal(headersCarrier.get(headers, "TraceParent"), "v");
    assert.equal(headersCarrier.get(headers, "baggage"), undefined);
    assert.deepEqual(headersCarrier.keys(headers), ["traceparent"]);
  });
});
