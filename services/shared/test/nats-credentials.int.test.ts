import { strict as assert } from "node:assert";
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import { connectNats, natsConnectionOptions } from "../src/nats/connect.js";
import { startNatsServer, type NatsServerHandle } from "../src/testing/nats-server.js";

const run = promisify(execFile);

/** One connection attempt, no retries: resolves connected or rejects with the server's refusal. */
async function connectOnce(url: string, opts: Parameters<typeof natsConnectionOptions>[0]) {
  const nc = await connect({ servers: url, reconnect: false, maxReconnectAttempts: 0, timeout: 5000, ...natsConnectionOptions(opts) });
  await nc.flush();
  return nc;
}

describe("natsConnectionOptions", () => {
  it("maps nothing to an anonymous plaintext connection, and each credential to its client option", () => {
    assert.deepEqual(natsConnectionOptions({}), {});
    assert.deepEqual(natsConnectionOptions({ user: "ingest", password: "pw" }), { user: "ingest", pass: "pw" });
    assert.deepEqual(natsConnectionOptions({ tlsCaFile: "/ca.pem" }), { tls: { caFile: "/ca.pem" } });
    assert.deepEqual(natsConnectionOptions({ tlsCaFile: "/ca.pem", tlsCertFile: "/c.pem", tlsKeyFile: "/k.pem" }), {
      tls: { caFile: "/ca.pem", certFile: "/c.pem", keyFile: "/k.pem" },
    });
    const creds = natsConnectionOptions({ credsFile: "/nonexistent/ingest.creds" });
    assert.equal(typeof creds.authenticator, "function");
    // The file is read when the client authenticates (so a rotated Secret is picked up), not before.
    assert.throws(() => (creds.authenticator as (nonce?: string) => unknown)("nonce"), /ENOENT/);
  });
});

describe("NATS credentials and TLS against a real nats-server", () => {
  let dir: string;
  let server: NatsServerHandle;
  let tlsServer: NatsServerHandle;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "nats-creds-"));
    // A CA, a server certificate for 127.0.0.1 and a client certificate, all made here.
    const ssl = (...args: string[]) => run("openssl", args, { cwd: dir });
    await ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.pem");
    await writeFile(join(dir, "server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
    await writeFile(join(dir, "client.ext"), "extendedKeyUsage=clientAuth\n");
    for (const who of ["server", "client"]) {
      await ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", `/CN=${who}`, "-keyout", `${who}.key`, "-out", `${who}.csr`);
      await ssl("x509", "-req", "-in", `${who}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-extfile", `${who}.ext`, "-out", `${who}.pem`);
    }
    await writeFile(join(dir, "auth.conf"), JSON.stringify({ authorization: { users: [{ user: "ingest", password: "s3cret" }] } }));
    await writeFile(
      join(dir, "tls.conf"),
      JSON.stringify({
        tls: { cert_file: join(dir, "server.pem"), key_file: join(dir, "server.key"), ca_file: join(dir, "ca.pem"), verify: true },
      }),
    );
    server = await startNatsServer({ configFile: join(dir, "auth.conf"), jetstream: false });
    tlsServer = await startNatsServer({ configFile: join(dir, "tls.conf"), jetstream: false });
  });
  afterAll(async () => {
    await server?.stop();
    await tlsServer?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("connects with the user's password and is refused without it or with a wrong one", async () => {
    await assert.rejects(connectOnce(server.url, {}), /authorization/i);
    await assert.rejects(connectOnce(server.url, { user: "ingest", password: "wrong" }), /authorization/i);
    const nc = await connectNats({ servers: server.url, name: "creds-test", connection: natsConnectionOptions({ user: "ingest", password: "s3cret" }) });
    try {
      assert.equal(nc.isClosed(), false);
      await nc.flush();
    } finally {
      await nc.close();
    }
  });

  it("verifies the server against the CA file and presents the client certificate (mutual TLS)", async () => {
    const url = `tls://127.0.0.1:${tlsServer.port}`;
    const ca = join(dir, "ca.pem");
    // No CA: the self-made server certificate is not trusted.
    await assert.rejects(connectOnce(url, { tlsCertFile: join(dir, "client.pem"), tlsKeyFile: join(dir, "client.key") }));
    // The CA but no client certificate: the server (verify: true) refuses.
    await assert.rejects(connectOnce(url, { tlsCaFile: ca }));
    const nc = await connectOnce(url, { tlsCaFile: ca, tlsCertFile: join(dir, "client.pem"), tlsKeyFile: join(dir, "client.key") });
    try {
      const sub = nc.subscribe("tls.ping", { max: 1 });
      nc.publish("tls.ping", "over TLS");
      for await (const m of sub) assert.equal(m.string(), "over TLS");
    } finally {
      await nc.close();
    }
  });
});
