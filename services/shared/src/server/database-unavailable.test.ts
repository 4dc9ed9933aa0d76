import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { Code, ConnectError, type UnaryRequest } from "@connectrpc/connect";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { failingHealthClient } from "../testing/failing-health.js";
import { createDatabaseUnavailableInterceptor } from "./database-unavailable.js";

const statementTimeout = () => Object.assign(new Error("canceling statement due to statement timeout"), { code: "57014", severity: "ERROR" });

describe("createDatabaseUnavailableInterceptor", () => {
  function setup(fail: (service: string) => unknown) {
    const warned: Array<Record<string, unknown>> = [];
    const log = { warn: (obj: object) => warned.push(obj as Record<string, unknown>) };
    return { client: failingHealthClient(fail, [createDatabaseUnavailableInterceptor({ log, warnIntervalMs: 60_000 })]), warned };
  }
  const codeOf = async (p: Promise<unknown>) => p.then(() => "ok", (e: unknown) => ConnectError.from(e));

  it("answers a statement timeout with Unavailable and the reason, keeping the cause, and warns once per interval", async () => {
    const cause = statementTimeout();
    const { client, warned } = setup(() => cause);
    const err = await codeOf(client.check({ service: "x" }));
    assert.ok(err instanceof ConnectError);
    assert.equal(err.code, Code.Unavailable);
    assert.equal(err.rawMessage, "database unavailable: the statement did not finish within the statement timeout (SQLSTATE 57014); retry later");
    assert.equal(warned.length, 1);
    assert.equal(warned[0]?.["rpc"], "/grpc.health.v1.Health/Check");
    assert.equal(warned[0]?.["err"], cause);
    assert.equal(((await codeOf(client.check({ service: "x" }))) as ConnectError).code, Code.Unavailable);
    assert.equal(warned.length, 1, "the second failure within the interval is only counted");
  });

  it("maps a stream that fails midway on a checkout timeout", async () => {
    const { client } = setup(() => new Error("timeout exceeded when trying to connect"));
    const got: number[] = [];
    const err = await codeOf(
      (async () => {
        for await (const m of client.watch({ service: "x" })) got.push(m.status);
      })(),
    );
    assert.deepEqual(got, [1]);
    assert.ok(err instanceof ConnectError);
    assert.equal(err.code, Code.Unavailable);
    assert.match(err.rawMessage, /connect timeout/);
  });

  it("leaves errors the handler mapped, and other failures, as they are", async () => {
    const { client, warned } = setup((s) => (s === "missing" ? new ConnectError("no such service", Code.NotFound) : new TypeError("bug")));
    assert.equal(((await codeOf(client.check({ service: "missing" }))) as ConnectError).code, Code.NotFound);
    assert.equal(((await codeOf(client.check({ service: "bug" }))) as ConnectError).code, Code.Internal);
    assert.deepEqual(warned, []);
  });

  it("answers DeadlineExceeded when the call's own deadline passed while it waited", async () => {
    const interceptor = createDatabaseUnavailableInterceptor({ log: { warn: () => {} } });
    const deadline = new AbortController();
    deadline.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded));
    const req = { service: Health, method: Health.method.check, signal: deadline.signal, stream: false } as unknown as UnaryRequest;
    const err = await codeOf(interceptor(() => Promise.reject(statementTimeout()))(req));
    assert.ok(err instanceof ConnectError);
    assert.equal(err.code, Code.DeadlineExceeded);
    assert.match(err.rawMessage, /^the deadline passed while waiting for the database: .*statement timeout/);
  });
});
