import { spawn, type ChildProcess } from "node:child_process";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createMeshEnvironment, serviceEntry, type MeshServiceName } from "@logistics/dev";
import { DEFAULT_MAX_TOKEN_LIFETIME_SEC } from "@logistics/shared/auth";
import { Health, HealthCheckResponse_ServingStatus } from "@logistics/shared/gen/grpc/health/v1/health_pb.js";
import { getFreePort, waitFor } from "@logistics/shared/testing";

export type MeshService = MeshServiceName;

/**
 * Lifetime of the tokens a perf run mints for its clients: the longest the services accept by
 * default (JWT_MAX_LIFETIME_SECONDS, which perf runs leave alone). A run holds its tokens from
 * start to end, and a soak lasts `--soak-minutes`; the default hour of a token would cut it off.
 */
export const RUN_TOKEN_LIFETIME_SECONDS = DEFAULT_MAX_TOKEN_LIFETIME_SEC;

/** The mesh as separate processes (as deployed), for load tests that must not share one event loop. */
export interface MeshProcesses {
  readonly ports: Readonly<Record<MeshService, number>>;
  readonly metricsPorts: Readonly<Record<MeshService, number>>;
  readonly pids: Readonly<Record<MeshService, number>>;
  readonly subjectPrefix: string;
  /** The mesh's private nats-server: its process id (for /proc CPU) and monitoring URL (/jsz). */
  readonly nats: { readonly pid: number | undefined; readonly monitorUrl: string };
  /**
   * The services that exited since the mesh was up, other than by `close()` (`routing exited (1)`).
   * A run must check it: /proc CPU keeps a gone process's last reading, so a dead service reads as
   * an idle one costing 0 ms, and its consumers' backlog as a slow mesh.
   */
  exited(): string[];
  token(scopes: readonly string[], extra?: { carrier?: string; customer?: string }): Promise<string>;
  close(): Promise<void>;
}


/** Where the mesh keeps its state; defaults are the machine's shared PostgreSQL and Redis. */
export interface MeshStores {
  /** PostgreSQL server for the services' schemas (a private cluster makes its CPU attributable). */
  databaseUrl?: string;
  /** Redis for ingest and tracking. */
  redisUrl?: string;
}

/** How the services' processes are started. */
export interface MeshProcessOptions {
  /** Extra Node.js options per service, before the entry script (e.g. `--cpu-prof`). */
  nodeArgs?: (service: MeshService) => readonly string[];
}

/**
 * Starts all four services as child processes against a private nats-server, per-service
 * PostgreSQL schemas, unique Redis key prefixes and temporary signing keys; waits until each
 * reports SERVING. `env` adds or overrides variables for every service.
 */
export async function startMeshProcesses(
  env: Record<string, string> = {},
  stores: MeshStores = {},
  o: MeshProcessOptions = {},
): Promise<MeshProcesses> {
  // A port picked free can be taken before the service binds it (by another process's outgoing
  // connection, which uses the same range): that service exits at startup. Start again on new ports.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startMeshOnce(env, stores, o);
    } catch (e) {
      if (!(e instanceof ServiceExitedError) || attempt >= 3) throw e;
    }
  }
}

/** A service process exited while the mesh was starting. */
class ServiceExitedError extends Error {}

async function startMeshOnce(env: Record<string, string>, stores: MeshStores, o: MeshProcessOptions): Promise<MeshProcesses> {
  const cleanups: Array<() => Promise<unknown>> = [];
  const children: ChildProcess[] = [];
  const undo = async () => {
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((r) => {
            if (c.exitCode !== null || c.signalCode !== null) return r();
            c.once("exit", () => r());
            c.kill("SIGTERM");
            setTimeout(() => c.kill("SIGKILL"), 15_000).unref();
          }),
      ),
    );
    for (const c of cleanups.reverse()) await c().catch(() => {});
  };
  try {
    const mesh = await createMeshEnvironment({
      idPrefix: "perf",
      base: { LOG_LEVEL: "warn", SHUTDOWN_GRACE_MS: "5000" },
      tokenLifetimeSeconds: RUN_TOKEN_LIFETIME_SECONDS,
      ...(stores.databaseUrl ? { databaseUrl: stores.databaseUrl } : {}),
      ...(stores.redisUrl ? { redisUrl: stores.redisUrl } : {}),
    });
    cleanups.push(() => mesh.close());
    const names: MeshService[] = ["ingest", "routing", "tracking", "notification"];
    const ports = {} as Record<MeshService, number>;
    const metricsPorts = {} as Record<MeshService, number>;
    const pids = {} as Record<MeshService, number>;
    for (const name of names) {
      ports[name] = await getFreePort();
      metricsPorts[name] = await getFreePort();
      const e = await mesh.envFor(name, {
        PORT: String(ports[name]),
        METRICS_PORT: String(metricsPorts[name]),
      });
      const child = spawn(process.execPath, [...(o.nodeArgs?.(name) ?? []), serviceEntry(name)], {
        env: { ...process.env, ...e, ...env },
        stdio: ["ignore", "inherit", "inherit"],
      });
      children.push(child);
      pids[name] = child.pid ?? 0;
    }
    const exited = (name: MeshService) => {
      const child = children[names.indexOf(name)]!;
      return child.exitCode !== null || child.signalCode !== null ? `${name} exited while starting (${child.exitCode ?? child.signalCode})` : undefined;
    };
    await Promise.all(
      names.map(async (name) => {
        const client = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${ports[name]}` }));
        const outcome = await waitFor(
          async () => exited(name) ?? ((await client.check({}, { timeoutMs: 1000 })).status === HealthCheckResponse_ServingStatus.SERVING && "up"),
          { timeoutMs: 60_000, intervalMs: 200, message: `${name} SERVING` },
        );
        if (outcome !== "up") throw new ServiceExitedError(String(outcome));
      }),
    );
    // SERVING on the RPC port is not all of startup: the metrics server binds after it. Every
    // process must still run once its metrics answer (a run with a service that exited at
    // startup would measure a mesh without it).
    await Promise.all(
      names.map(async (name) => {
        const outcome = await waitFor(async () => exited(name) ?? ((await fetch(`http://127.0.0.1:${metricsPorts[name]}/metrics`)).ok && "up"), {
          timeoutMs: 60_000,
          intervalMs: 200,
          message: `${name} metrics`,
        });
        if (outcome !== "up") throw new ServiceExitedError(String(outcome));
      }),
    );
    let closing: Promise<void> | undefined;
    const exits: string[] = [];
    names.forEach((name, i) =>
      children[i]!.once("exit", (code, signal) => {
        if (!closing) exits.push(`${name} exited (${code ?? signal})`);
      }),
    );
    return {
      ports,
      metricsPorts,
      pids,
      subjectPrefix: mesh.id,
      nats: { pid: mesh.nats.pid, monitorUrl: mesh.nats.monitorUrl },
      token: (scopes, extra) => mesh.token(scopes, extra),
      exited: () => [...exits],
      close: () => (closing ??= undo()),
    };
  } catch (e) {
    await undo();
    throw e;
  }
}

/** Reads one gauge (summed over label sets) from a Prometheus text endpoint. */
export async function scrapeGauge(metricsPort: number, name: string): Promise<number | undefined> {
  return (await scrapeGauges(metricsPort, [name]))[name];
}

/** Reads several gauges (each summed over its label sets) from one scrape of a Prometheus text endpoint. */
export async function scrapeGauges<N extends string>(metricsPort: number, names: readonly N[]): Promise<Partial<Record<N, number>>> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const sums: Partial<Record<N, number>> = {};
  for (const line of text.split("\n")) {
    const name = names.find((n) => line.startsWith(n + " ") || line.startsWith(n + "{"));
    if (name === undefined) continue;
    const v = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (Number.isFinite(v)) sums[name] = (sums[name] ?? 0) + v;
  }
  return sums;
}
