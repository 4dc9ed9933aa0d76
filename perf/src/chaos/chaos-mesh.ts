/**
 * The mesh a chaos run breaks: a private three-node JetStream cluster (every stream and bucket
 * with 3 replicas), a private PostgreSQL cluster and a private redis-server (so they can be
 * killed without touching anyone else's), and every service as its own processes, N replicas
 * each on fixed ports so a restarted replica comes back where carriers expect it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdirSync, type WriteStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { RUN_TOKEN_LIFETIME_SECONDS } from "../lib/mesh-processes.js";
import { canPartition, startPartitionableCluster, type ChaosCluster } from "./netns-cluster.js";
import { createMeshEnvironment, serviceEntry, MESH_SERVICES, type MeshEnvironment, type MeshServiceName } from "@logistics/dev";
import { Health, HealthCheckResponse_ServingStatus } from "@logistics/shared/gen/grpc/health/v1/health_pb.js";
import {
  getFreePort,
  removeOnExit,
  startNatsCluster,
  startPostgresServer,
  startRedisServer,
  waitFor,
  type PostgresServerHandle,
  type RedisServerHandle,
} from "@logistics/shared/testing";

/** The chaos run's PostgreSQL: one cluster directory, a server that can be halted and started again on it. */
export interface ChaosPostgres {
  readonly url: string;
  /** Fast shutdown (SIGINT), keeping the cluster: an outage. */
  halt(): Promise<void>;
  /** Starts the server again on the same port and data; resolves when it accepts connections. */
  start(): Promise<void>;
  /** Stops the server and removes the cluster. */
  stop(): Promise<void>;
}

async function startChaosPostgres(): Promise<ChaosPostgres> {
  // The cluster directory itself (empty, in the temp dir the postgres user can reach).
  const dataDir = await mkdtemp(join(tmpdir(), "chaos-pg-"));
  const dir = dataDir;
  const forget = removeOnExit(dir);
  // Durable like production (fsync, synchronous commit): the outage must not be a cheaper one.
  let server: PostgresServerHandle = await startPostgresServer({ dataDir, databases: ["chaos"], durable: true });
  const port = server.port;
  return {
    url: server.url,
    halt: () => server.stop(),
    async start() {
      if (server.isRunning()) return;
      server = await startPostgresServer({ dataDir, port, databases: ["chaos"], durable: true });
    },
    async stop() {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
      forget();
    },
  };
}

/** One process of one service. */
export interface ServiceReplica {
  readonly service: MeshServiceName;
  readonly index: number;
  readonly port: number;
  readonly address: string;
  readonly pid: number | undefined;
  isRunning(): boolean;
  /** Starts the process (again) and resolves when its health check says SERVING. */
  start(): Promise<void>;
  /** SIGTERM and wait for the exit (as a rolling restart does); resolves with the exit code. */
  terminate(): Promise<number | null>;
  /** SIGKILL, as a crash or an OOM kill; resolves when the process is gone. */
  kill(): Promise<void>;
}

/** Options for {@link startChaosMesh}. */
export interface ChaosMeshOptions {
  /** Replicas per service. Default 2 each. */
  readonly replicas?: Partial<Record<MeshServiceName, number>>;
  /** Folder for the processes' logs (kept for a post-mortem, not committed). */
  readonly logDir: string;
  /** More variables for every service. */
  readonly env?: Readonly<Record<string, string>>;
  /**
   * Run the third NATS node in its own network namespace so it can be partitioned (needs root and
   * `ip netns`; without them the cluster runs on loopback and cannot be partitioned). Default false.
   */
  readonly partitionable?: boolean;
}

/** A running chaos mesh. */
export interface ChaosMesh {
  readonly nats: ChaosCluster;
  readonly postgres: ChaosPostgres;
  readonly redis: RedisServerHandle;
  readonly env: MeshEnvironment;
  readonly subjectPrefix: string;
  readonly replicas: Readonly<Record<MeshServiceName, readonly ServiceReplica[]>>;
  /** `host:port` of every replica of a service. */
  addresses(service: MeshServiceName): string[];
  close(): Promise<void>;
}

/** Starts the infrastructure and every replica; resolves when all report SERVING. */
export async function startChaosMesh(o: ChaosMeshOptions): Promise<ChaosMesh> {
  mkdirSync(o.logDir, { recursive: true });
  const cleanups: Array<() => Promise<unknown>> = [];
  const undo = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    cleanups.length = 0;
  };
  try {
    const startCluster = async (): Promise<ChaosCluster> =>
      o.partitionable && canPartition() ? startPartitionableCluster() : startNatsCluster({ size: 3 });
    const [nats, postgres, redis] = await Promise.all([startCluster(), startChaosPostgres(), startRedisServer()]);
    cleanups.push(() => nats.stop(), () => postgres.stop(), () => redis.stop());
    const env = await createMeshEnvironment({
      idPrefix: "chaos",
      databaseUrl: postgres.url,
      redisUrl: redis.url,
      // The checker reads with the run's admin token after every fault has run its course.
      tokenLifetimeSeconds: RUN_TOKEN_LIFETIME_SECONDS,
      base: {
        // The cluster, not the environment's own single server (which then idles).
        NATS_URL: nats.urls.join(","),
        LOG_LEVEL: "warn",
        STREAM_REPLICAS: "3",
        SHUTDOWN_GRACE_MS: "5000",
        SHUTDOWN_CLOSE_MS: "5000",
        ...o.env,
      },
    });
    cleanups.push(() => env.close());
    const replicas = {} as Record<MeshServiceName, ServiceReplica[]>;
    const all: ServiceReplica[] = [];
    cleanups.push(async () => {
      await Promise.all(all.map((r) => r.terminate()));
    });
    for (const service of MESH_SERVICES) {
      // One environment per service (one schema), shared by its replicas as in a deployment.
      const serviceEnv = await env.envFor(service, service === "notification" ? { NOTIFICATION_POLL_INTERVAL_MS: "100" } : {});
      const n = o.replicas?.[service] ?? 2;
      replicas[service] = [];
      for (let i = 0; i < n; i++) {
        const r = await replica(service, i, serviceEnv, o.logDir);
        replicas[service].push(r);
        all.push(r);
      }
    }
    // One replica at a time: the first creates the replicated streams, and on a small machine
    // replicas starting together can outlast the JetStream API's timeout while it does.
    for (const service of MESH_SERVICES) for (const r of replicas[service]) await r.start();
    let closing: Promise<void> | undefined;
    return {
      nats,
      postgres,
      redis,
      env,
      subjectPrefix: env.id,
      replicas,
      addresses: (service) => replicas[service].map((r) => r.address),
      close: () => (closing ??= undo()),
    };
  } catch (e) {
    await undo();
    throw e;
  }
}

async function replica(service: MeshServiceName, index: number, env: Record<string, string>, logDir: string): Promise<ServiceReplica> {
  let port = await getFreePort();
  let metricsPort = await getFreePort();
  let served = false;
  let child: ChildProcess | undefined;
  let exited: Promise<number | null> = Promise.resolve(null);
  const log: WriteStream = createWriteStream(join(logDir, `${service}-${index}.log`), { flags: "a" });
  const running = () => child !== undefined && child.exitCode === null && child.signalCode === null;

  /** Spawns the process and waits for SERVING; rejects with its last output if it exits first. */
  const launch = async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
    const c = spawn(process.execPath, [serviceEntry(service)], {
      env: { ...process.env, ...env, PORT: String(port), METRICS_PORT: String(metricsPort), OTEL_SERVICE_NAME: `${service}-${index}` },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child = c;
    let tail = "";
    const keep = (b: Buffer) => {
      tail = (tail + b.toString("utf8")).slice(-2000);
    };
    c.stdout?.on("data", keep);
    c.stderr?.on("data", keep);
    c.stdout?.pipe(log, { end: false });
    c.stderr?.pipe(log, { end: false });
    const gone = new AbortController();
    exited = new Promise((r) =>
      c.once("exit", (code) => {
        gone.abort(new Error(`${service}-${index} exited (${code ?? c.signalCode}) before SERVING: ${tail.slice(-400)}`));
        r(code);
      }),
    );
    process.once("exit", () => c.kill("SIGKILL"));
    await waitFor(
      async () => {
        try {
          return (await health.check({}, { timeoutMs: 1000 })).status === HealthCheckResponse_ServingStatus.SERVING;
        } catch {
          return false;
        }
      },
      { timeoutMs: 90_000, intervalMs: 200, message: `${service}-${index} SERVING`, signal: gone.signal },
    );
  };

  return {
    service,
    index,
    get port() {
      return port;
    },
    get address() {
      return `127.0.0.1:${port}`;
    },
    get pid() {
      return child?.pid;
    },
    isRunning: running,
    async start() {
      if (running()) return;
      for (let attempt = 1; ; attempt++) {
        try {
          await launch();
          served = true;
          return;
        } catch (e) {
          // A port picked free earlier may have been taken since (a shared machine); before the
          // first SERVING nobody knows the address yet, so take new ones.
          const taken = /EADDRINUSE/.test(`${String(e)} ${String((e as Error).cause ?? "")}`);
          if (served || !taken || attempt >= 3) throw e;
          port = await getFreePort();
          metricsPort = await getFreePort();
        }
      }
    },
    async terminate() {
      if (!running()) return child?.exitCode ?? null;
      const c = child!;
      c.kill("SIGTERM");
      const timer = setTimeout(() => c.kill("SIGKILL"), 40_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
    async kill() {
      if (!running()) return;
      child!.kill("SIGKILL");
      await exited;
    },
  };
}
