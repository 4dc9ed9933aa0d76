import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, it } from "vitest";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ensureDevKeys } from "../src/auth/index.js";
import { defineConfig } from "../src/config/index.js";
import { baseConfigSpec, startService, type BaseConfig, type ServiceDefinition } from "../src/runtime/index.js";
import { serviceTestEnv, testNatsUrl, uniqueName, waitFor } from "../src/testing/index.js";

const config = defineConfig(baseConfigSpec({ port: 0, metricsPort: 0 }));

/**
 * A service that subscribes to a subject it also publishes on (as tracking does with its change
 * notices): with `natsNoEcho` the broker sends it only what other connections publish.
 */
function echoProbe(noEcho: boolean, subject: string, received: string[]): ServiceDefinition<BaseConfig> {
  return {
    name: "echo-probe",
    services: [],
    policies: {},
    natsNoEcho: noEcho,
    async start(ctx) {
      const sub = ctx.nats.subscribe(subject, { callback: (_err, msg) => void received.push(msg.string()) });
      await ctx.nats.flush();
      ctx.nats.publish(subject, "own");
      // The broker answers the flush after it handled the publish: an echo arrives before it.
      await ctx.nats.flush();
      return { routes: () => {}, close: async () => sub.unsubscribe() };
    },
  };
}

describe("startService: natsNoEcho", () => {
  let keysDir: string;
  let jwksPath: string;
  let outside: NatsConnection;
  beforeAll(async () => {
    keysDir = await mkdtemp(join(tmpdir(), "no-echo-keys-"));
    jwksPath = (await ensureDevKeys(keysDir)).jwksPath;
    outside = await connect({ servers: testNatsUrl() });
  });
  afterAll(async () => {
    await outside?.close();
    await rm(keysDir, { recursive: true, force: true });
  });

  for (const noEcho of [true, false]) {
    it(`${noEcho ? "does not deliver" : "delivers"} the service's own publications back to it, and always what others publish`, async () => {
      const prefix = uniqueName("echo");
      const subject = `${prefix}.notices`;
      const received: string[] = [];
      const svc = await startService(
        echoProbe(noEcho, subject, received),
        config.parse(serviceTestEnv({ natsUrl: testNatsUrl(), prefix, jwksPath })) as BaseConfig,
      );
      try {
        outside.publish(subject, "other");
        await outside.flush();
        await waitFor(() => received.includes("other"), { message: "the other connection's message" });
        // An echo of "own" would have arrived before the service started (its flush).
        assert.deepEqual(received.sort(), noEcho ? ["other"] : ["other", "own"]);
      } finally {
        await svc.close();
      }
    });
  }
});
