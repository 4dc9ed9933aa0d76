import { strict as assert } from "node:assert";
import { access } from "node:fs/promises";
import { describe, it } from "vitest";
import { create, fromBinary } from "@bufbuild/protobuf";
import { StringValueSchema } from "@bufbuild/protobuf/wkt";
import type { NatsConnection } from "@nats-io/transport-node";
import { connectNats, jetstreamFor } from "../src/nats/connect.js";
import { createEventPublisher } from "../src/nats/publisher.js";
import { ensureStreams } from "../src/nats/streams.js";
import { createSubjects } from "../src/nats/subjects.js";
import { startNatsCluster, startNatsServer } from "../src/testing/nats-server.js";
import { uniqueName } from "../src/testing/unique.js";
import { waitFor } from "../src/testing/wait-for.js";

const exists = (path: string) => access(path).then(() => true, () => false);

describe("startNatsServer", () => {
  it("keeps JetStream data across restart() on the same port and store", async () => {
    const server = await startNatsServer();
    let nc: NatsConnection | undefined;
    try {
      nc = await connectNats({ servers: server.url, name: "restart-test", reconnectTimeWaitMs: 50 });
      const { js, jsm } = await jetstreamFor(nc);
      const s = createSubjects(uniqueName("t"));
      await ensureStreams(jsm, [s.streams.shipments]);
      const subject = s.shipmentCreated("eu");
      await createEventPublisher({ js }).publish(subject, StringValueSchema, create(StringValueSchema, { value: "kept" }), {
        msgId: "e1",
      });

      const pidBefore = server.pid;
      await server.restart();
      assert.notEqual(server.pid, pidBefore);
      assert.equal(server.isRunning(), true);

      // The client reconnects to the same URL; JetStream recovers the stream from the store.
      const client = nc;
      await waitFor(() => client.flush().then(() => true), { message: "client reconnected after restart" });
      const info = await jsm.streams.info(s.streams.shipments.name);
      assert.equal(info.state.messages, 1);
      const stored = await jsm.streams.getMessage(s.streams.shipments.name, { last_by_subj: subject });
      assert.equal(stored && fromBinary(StringValueSchema, stored.data).value, "kept");
    } finally {
      await nc?.close();
      await server.stop();
    }
    assert.equal(server.isRunning(), false);
    assert.equal(await exists(server.storeDir), false, "store directory removed by the final stop");
  });

  it("recovers acknowledged messages after kill() (SIGKILL) and restart()", async () => {
    const server = await startNatsServer();
    try {
      const s = createSubjects(uniqueName("t"));
      {
        const nc = await connectNats({ servers: server.url, name: "crash-test" });
        const { js, jsm } = await jetstreamFor(nc);
        await ensureStreams(jsm, [s.streams.scans]);
        const publisher = createEventPublisher({ js });
        for (let i = 0; i < 5; i++) {
          await publisher.publish(s.scanRecorded("eu", "DHL"), StringValueSchema, create(StringValueSchema), { msgId: `e${i}` });
        }
        await nc.close();
      }
      await server.kill();
      assert.equal(server.isRunning(), false);
      assert.equal(await exists(server.storeDir), true, "store kept after a crash");
      await server.restart();
      const nc = await connectNats({ servers: server.url, name: "crash-test-2" });
      try {
        const { jsm } = await jetstreamFor(nc);
        const info = await jsm.streams.info(s.streams.scans.name);
        assert.equal(info.state.messages, 5);
      } finally {
        await nc.close();
      }
    } finally {
      await server.stop();
    }
  });

  it("fails fast with the server output when the binary cannot start", async () => {
    await assert.rejects(startNatsServer({ binary: "nats-server-does-not-exist" }), /exited.*ENOENT/s);
  });
});

describe("startNatsCluster", () => {
  it("starts a 3-node JetStream cluster that accepts an R3 stream, and stop() cleans up", async () => {
    const cluster = await startNatsCluster({ size: 3 });
    let nc: NatsConnection | undefined;
    try {
      assert.equal(cluster.urls.length, 3);
      assert.equal(new Set(cluster.servers.map((x) => x.serverName)).size, 3);
      nc = await connectNats({ servers: cluster.urls, name: "cluster-test" });
      const { js, jsm } = await jetstreamFor(nc);
      const s = createSubjects(uniqueName("t"));
      const [result] = await ensureStreams(jsm, [s.streams.scans], { replicas: 3 });
      assert.equal(result?.info.config.num_replicas, 3);
      const publisher = createEventPublisher({ js });
      for (let i = 0; i < 5; i++) {
        await publisher.publish(s.scanRecorded("eu", "DHL"), StringValueSchema, create(StringValueSchema), { msgId: `e${i}` });
      }
      const info = await waitFor(async () => {
        const i = await jsm.streams.info(s.streams.scans.name);
        return i.cluster?.replicas?.length === 2 && i.cluster.replicas.every((r) => r.current) ? i : null;
      }, { message: "R3 stream with two current replicas" });
      assert.equal(info.state.messages, 5);
      assert.equal(info.cluster?.name, cluster.clusterName);
    } finally {
      await nc?.close();
      await cluster.stop();
    }
    assert.deepEqual(cluster.servers.map((x) => x.isRunning()), [false, false, false]);
    for (const server of cluster.servers) assert.equal(await exists(server.storeDir), false);
  });
});
