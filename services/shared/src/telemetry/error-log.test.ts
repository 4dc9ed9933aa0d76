import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { startTestConnectServer } from "../testing/connect-server.js";
import { failingHealthClient } from "../testing/failing-health.js";
import { createErrorLogInterceptor } from "./error-log.js";

describe("createErrorLogInterceptor", () => {
  function setup(fail: (service: string) => unknown) {
    const logged: Array<{ obj: Record<string, unknown>; msg?: string }> = [];
    const interceptor = createErrorLogInterceptor({ error: (obj, msg) => logged.push({ obj: obj as Record<string, unknown>, msg }) });
    return { client: failingHealthClient(fail, [interceptor]), logged };
  }

  it("logs a handler's unexpected error (answered Internal) with the method and the cause", async () => {
    const boom = new TypeError("cannot read properties of undefined");
    const { client, logged } = setup(() => boom);
    await assert.rejects(client.check({ service: "x" }), (e: unknown) => ConnectError.from(e).code === Code.Internal);
    assert.equal(logged.length, 1);
    assert.equal(logged[0]?.obj["rpc"], "/grpc.health.v1.Health/Check");
    assert.equal(logged[0]?.obj["err"], boom);
  });

  it("logs a stream that fails midway, and nothing for errors that answer the caller precisely", async () => {
    const { client, logged } = setup((s) => (s === "bad" ? new Error("lost") : new ConnectError("no such service", Code.NotFound)));
    await assert.rejects(async () => {
      for await (const _ of client.watch({ service: "bad" })) void _;
    });
    assert.equal(logged.length, 1);
    assert.equal(logged[0]?.obj["rpc"], "/grpc.health.v1.Health/Watch");
    await assert.rejects(client.check({ service: "missing" }), (e: unknown) => ConnectError.from(e).code === Code.NotFound);
    assert.equal(logged.length, 1);
  });

  it("logs nothing when the caller cancels a stream and the handler unwinds with whatever it throws (real h2c)", async () => {
    const logged: object[] = [];
    let ended = () => {};
    const handlerEnded = new Promise<void>((r) => (ended = r));
    const server = await startTestConnectServer(
      (router) =>
        router.service(Health, {
          async *watch(_req, ctx) {
            try {
              yield { status: 1 };
              await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
              throw new Error("the caller went away mid-stream");
            } finally {
              ended();
            }
          },
        }),
      [createErrorLogInterceptor({ error: (obj) => logged.push(obj) })],
    );
    try {
      const client = createClient(Health, createGrpcTransport({ baseUrl: server.baseUrl }));
      const cancel = new AbortController();
      await assert.rejects(async () => {
        for await (const _ of client.watch({}, { signal: cancel.signal })) {
          void _;
          cancel.abort();
        }
      });
      await handlerEnded;
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(logged, []);
    } finally {
      await server.close();
    }
  });
});
