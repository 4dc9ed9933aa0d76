import {
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
  type JetStreamOptions,
} from "@nats-io/jetstream";
import { readFileSync } from "node:fs";
import { connect, credsAuthenticator, type NatsConnection, type NodeConnectionOptions } from "@nats-io/transport-node";
import { silentNatsLog, type NatsLog } from "./nats-log.js";

/** Options for {@link connectNats}. */
export interface ConnectNatsOptions {
  /** Server URL(s), e.g. `nats://nats:4222`; list every cluster node you know. */
  servers: string | string[];
  /** Client name shown in server monitoring (use the service name). */
  name: string;
  logger?: NatsLog;
  /** Pause between reconnect attempts. Default 1 000 ms. */
  reconnectTimeWaitMs?: number;
  /** Anything else to pass to the client; overrides the defaults above. */
  connection?: Partial<NodeConnectionOptions>;
}

/**
 * Connects to NATS with the settings a long-running service wants: reconnect forever
 * (`maxReconnectAttempts: -1`) with `reconnectTimeWaitMs` between attempts, and keep retrying
 * the first connect too (`waitOnFirstConnect`), so a service started before NATS waits for it
 * instead of crashing. Connection status changes (disconnect, reconnect, errors, stale
 * connection, slow consumer) are logged until the connection closes. The server is pinged every
 * 10 s; a connection with 3 pings unanswered is taken for dead and replaced (within 40 s). Async stack traces on
 * request errors are off (`noAsyncTraces`): they cost an allocation per JetStream publish.
 *
 * Shut down with `await nc.drain()` after closing consumers.
 */
export async function connectNats(opts: ConnectNatsOptions): Promise<NatsConnection> {
  const log = opts.logger ?? silentNatsLog;
  const nc = await connect({
    servers: opts.servers,
    name: opts.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: opts.reconnectTimeWaitMs ?? 1000,
    waitOnFirstConnect: true,
    // Without this, every request (each JetStream publish) allocates an Error to capture the
    // caller's stack; profiles of ingest showed about a quarter of its CPU spent there.
    noAsyncTraces: true,
    // The client default pings every 2 minutes and declares the connection stale when a ping
    // finds 2 unanswered: a broker that vanished without closing the socket (host crash,
    // partition, a dropped NAT entry) went unnoticed for up to 6 minutes, while publishes sat in
    // the dead socket and consumers idled. With a ping every 10 s and 3 allowed outstanding, it
    // is noticed within 40 s (then reconnect and resubscribe), for a few bytes every 10 s; a
    // busy event loop would need to stall for 30 s to be taken for a dead broker.
    pingInterval: 10_000,
    maxPingOut: 3,
    ...opts.connection,
  });
  log.info({ server: nc.getServer(), name: opts.name }, "connected to NATS");
  void (async () => {
    for await (const s of nc.status()) {
      switch (s.type) {
        case "disconnect":
          log.warn({ server: s.server }, "NATS disconnected");
          break;
        case "reconnect":
          log.info({ server: s.server }, "NATS reconnected");
          break;
        case "error":
          log.error({ err: s.error }, "NATS connection error");
          break;
        case "staleConnection":
        case "ldm":
          log.warn({ status: s.type }, "NATS connection status");
          break;
        case "slowConsumer":
          log.warn({ subject: s.sub.getSubject(), pending: s.pending }, "NATS slow consumer");
          break;
        default:
          log.debug({ status: s.type }, "NATS connection status");
      }
    }
  })();
  void nc.closed().then((err) => {
    if (err) log.error({ err }, "NATS connection closed with an error");
    else log.info({ name: opts.name }, "NATS connection closed");
  });
  return nc;
}

/** How a client proves who it is to NATS and checks the servers' certificates; every field optional. */
export interface NatsCredentials {
  /** User name and password (server `authorization`/`accounts` users). */
  user?: string;
  password?: string;
  /** A credentials file (user JWT + nkey seed) for servers in operator/JWT mode. Read at connect time. */
  credsFile?: string;
  /** PEM CA bundle of the servers' certificates; the client then requires TLS. */
  tlsCaFile?: string;
  /** PEM client certificate and key, for servers that verify clients (`verify: true`). */
  tlsCertFile?: string;
  tlsKeyFile?: string;
}

/**
 * Connection options for {@link connectNats}'s `connection` from credentials (e.g. a service's
 * `NATS_USER`/`NATS_PASSWORD`, `NATS_CREDS_FILE`, `NATS_TLS_*` variables). Nothing set yields `{}`:
 * an anonymous, plaintext connection, as to a local development server. The creds file is re-read
 * on every (re)connect, so a rotated Secret takes effect without a restart.
 */
export function natsConnectionOptions(c: NatsCredentials): Partial<NodeConnectionOptions> {
  const opts: Partial<NodeConnectionOptions> = {};
  if (c.user !== undefined) {
    opts.user = c.user;
    if (c.password !== undefined) opts.pass = c.password;
  }
  const credsFile = c.credsFile;
  if (credsFile !== undefined) opts.authenticator = credsAuthenticator(() => readFileSync(credsFile));
  if (c.tlsCaFile !== undefined || c.tlsCertFile !== undefined) {
    opts.tls = {
      ...(c.tlsCaFile !== undefined ? { caFile: c.tlsCaFile } : {}),
      ...(c.tlsCertFile !== undefined ? { certFile: c.tlsCertFile } : {}),
      ...(c.tlsKeyFile !== undefined ? { keyFile: c.tlsKeyFile } : {}),
    };
  }
  return opts;
}

/** The JetStream client and manager of a connection. */
export interface JetStreamHandles {
  js: JetStreamClient;
  jsm: JetStreamManager;
}

/**
 * JetStream client and manager for `nc`. Rejects when JetStream is not enabled for the account
 * (the manager checks the JetStream API once).
 */
export async function jetstreamFor(nc: NatsConnection, opts?: JetStreamOptions): Promise<JetStreamHandles> {
  const jsm = await jetstreamManager(nc, opts);
  return { js: jetstream(nc, opts), jsm };
}
