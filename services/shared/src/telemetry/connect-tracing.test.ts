import * as assert from "node:assert/strict";
import { describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { trace } from "@opentelemetry/api";
import {
  Health,
  HealthCheckResponse_ServingStatus,
  HealthCheckResponseSchema,
} from "../gen/grpc/health/v1/health_pb.js";
import { createClientTracingInterceptor, createServerTracingInterceptor } from "./connect-tracing.js";

const SERVING = create(HealthCheckResponseSchema, { status: HealthCheckResponse_ServingStatus.SERVING });

describe("tracing interceptors without a started SDK", () => {
  it("pass calls, streams and errors through unchanged and send no trace headers", async () => {
    const seenHeaders: Array<string | null> = [];
    const transport = createRouterTransport(
      (router) =>
        router.service(Health, {
          check(req, ctx) {
            seenHeaders.push(ctx.requestHeader.get("traceparent"));
            assert.equal(trace.getActiveSpan()?.isRecording() ?? false, false);
            if (req.service === "missing") throw new ConnectError("unknown service", Code.NotFound);
            return SERVING;
          },
          async *watch() {
            yield SERVING;
            yield SERVING;
          },
        }),
      {
        router: { interceptors: [createServerTracingInterceptor()] },
        transport: { interceptors: [createClientTracingInterceptor()] },
      },
    );
    const client = createClient(Health, transport);

    assert.equal((await client.check({})).status, HealthCheckResponse_ServingStatus.SERVING);
    await assert.rejects(client.check({ service: "missing" }), (err) => ConnectError.from(err).code === Code.NotFound);
    let n = 0;
    for await (const _ of client.watch({})) n++;
    assert.equal(n, 2);
    assert.deepEqual(seenHeaders, [null, null]);
  });
});
