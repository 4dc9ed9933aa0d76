/**
 * `npm start`: runs the whole mesh locally, as a supervisor.
 *
 * PostgreSQL, NATS and Redis are those named by DATABASE_URL / NATS_URL / REDIS_URL, or private ones
 * started here with their data under `.dev-data/start/` (MESH_DATA_DIR; see infra.ts). Each service
 * runs as its own process (as in production), with dev signing keys, and counts as up only when
 * that child itself reports ready; one that dies is restarted with backoff (printed). The runner
 * refuses to start when a port it needs is taken. It also builds and serves the tracking page
 * (WEB_PORT, default 8080; WEB=off skips it) and runs a carrier simulator that moves a few parcels
 * along their routes (SIMULATOR=off skips it), then prints where everything listens and a tracking
 * link to open.
 *
 * SIGINT (Ctrl-C), SIGTERM and SIGHUP, and the end of the parent process (npm), stop everything in
 * order: simulator and page, then the services (they drain), then the servers started here. A
 * second signal kills everything at once.
 */
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_MAX_TOKEN_LIFETIME_SEC, ensureDevKeys, mintToken, Scope } from "@logistics/shared/auth";
import { startCarrierSimulator, type CarrierSimulator } from "./carrier-simulator.js";
import { listWebHubs } from "./hub-directory.js";
import { DEV_DATA_DIR, provideMeshServers, type MeshServers } from "./infra.js";
import { takenPorts, type PlannedPort } from "./ports.js";
import { createRenewingToken } from "./renewing-token.js";
import { MESH_SERVICES, serviceEntry, type MeshServiceName } from "./service-entry.js";
import { Supervisor } from "./supervisor.js";
import { buildWebPage } from "./web-build.js";
import { startWebServer, type WebServerHandle } from "./web-server.js";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, "..", "..");
const env = process.env;
const webEnabled = env["WEB"] !== "off";
const simulatorEnabled = env["SIMULATOR"] !== "off";
const webHost = env["WEB_HOST"] ?? "127.0.0.1";
const webPort = Number(env["WEB_PORT"] ?? 8080);
const webOrigins = [`http://${webHost}:${webPort}`, `http://localhost:${webPort}`, `http://127.0.0.1:${webPort}`];
/** Where the services listen: loopback unless HOST says otherwise. */
const serviceHost = env["HOST"] ?? "127.0.0.1";
const startTimeoutMs = Number(env["START_TIMEOUT_MS"] ?? 120_000);

interface Planned {
  name: MeshServiceName;
  port: number;
  metricsPort: number;
}

const defaults: Record<MeshServiceName, [number, number]> = {
  ingest: [8081, 9101],
  routing: [8082, 9102],
  tracking: [8083, 9103],
  notification: [8084, 9104],
};
const services: Planned[] = MESH_SERVICES.map((name) => {
  const upper = name.toUpperCase();
  return {
    name,
    port: Number(env[`${upper}_PORT`] ?? defaults[name][0]),
    metricsPort: Number(env[`${upper}_METRICS_PORT`] ?? defaults[name][1]),
  };
});
const port = (name: MeshServiceName) => services.find((s) => s.name === name)!.port;
const say = (who: string, line: string) => process.stdout.write(`${who.padEnd(12)}| ${line}\n`);
const fail = (line: string) => process.stderr.write(`${line}\n`);

// Refuse to start when a port is taken: whatever holds it (often the services of an earlier run)
// would answer in our services' place.
const planned: PlannedPort[] = services.flatMap((s) => {
  const upper = s.name.toUpperCase();
  return [
    { port: s.port, what: `${s.name} (gRPC/Connect)`, setting: `${upper}_PORT` },
    { port: s.metricsPort, what: `${s.name} metrics`, setting: `${upper}_METRICS_PORT` },
  ];
});
if (webEnabled) planned.push({ port: webPort, what: "tracking page", setting: "WEB_PORT" });
const taken = await takenPorts(serviceHost, planned);
if (taken.length > 0) {
  fail(`npm start: cannot start, ${taken.length === 1 ? "a port is" : "ports are"} taken:`);
  for (const t of taken) fail(`  ${t}`);
  process.exit(1);
}

// --- lifecycle -------------------------------------------------------------------------------
let shuttingDown: Promise<void> | undefined;
let servers: MeshServers | undefined;
let serversStarting: Promise<MeshServers | undefined> | undefined;
let web: WebServerHandle | undefined;
let simulator: CarrierSimulator | undefined;
const supervisor = new Supervisor({
  output: (name, line, stream) => (stream === "stdout" ? process.stdout : process.stderr).write(`${name.padEnd(12)}| ${line}\n`),
  notice: (line) => say("runner", line),
  onFatal: (name, code) => void shutdown(`${name} cannot run (exit code ${code})`, 1),
});

/** Stops everything in order, once; exits with `code`. */
function shutdown(why: string, code: number): Promise<void> {
  if (shuttingDown) return shuttingDown;
  process.exitCode = code;
  say("runner", `${why}: stopping`);
  shuttingDown = (async () => {
    await simulator?.close().catch(() => {});
    await web?.close().catch(() => {});
    await supervisor.stopAll();
    const s = servers ?? (await serversStarting?.catch(() => undefined));
    await s?.stop().catch(() => {});
    say("runner", "stopped");
    process.exit(code);
  })();
  return shuttingDown;
}

for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, () => {
    if (!shuttingDown) {
      void shutdown(`${signal} received`, signal === "SIGINT" ? 0 : 128 + (signal === "SIGTERM" ? 15 : 1));
      return;
    }
    say("runner", `${signal} again: killing everything now`);
    supervisor.killAll();
    process.exit(130); // the servers started here are killed by their launchers' exit hook
  });
}
// npm does not pass SIGHUP on, and a parent killed outright passes nothing: when the parent goes
// away (this process is re-parented), stop as for a signal.
const parentPid = process.ppid;
setInterval(() => {
  if (process.ppid !== parentPid) void shutdown(`the parent process (${parentPid}) is gone`, 1);
}, 500).unref();
process.on("exit", () => supervisor.killAll());

// --- start -----------------------------------------------------------------------------------
const keys = await ensureDevKeys(resolve(env["DEV_KEYS_DIR"] ?? ".dev-keys"));
serversStarting = provideMeshServers({
  database: "mesh",
  dataDir: resolve(env["MESH_DATA_DIR"] ?? join(DEV_DATA_DIR, "start")),
  persistent: true,
  supervised: true,
  log: (line) => say("servers", line),
});
try {
  servers = await serversStarting;
} catch (e) {
  fail(e instanceof Error ? e.message : String(e));
  await shutdown("the servers could not start", 1);
}
const serverEnv = servers!.env;
for (const [name, pid] of Object.entries(servers!.pids)) say("servers", `${name} pid ${pid}`);

// Built while the services start; a failed build only costs the page, not the mesh.
const pageBuilt: Promise<string | undefined> = webEnabled
  ? buildWebPage({ repoRoot }).catch((e: unknown) => {
      fail(`tracking page build failed: ${e instanceof Error ? e.message : String(e)}`);
      return undefined;
    })
  : Promise.resolve(undefined);

for (const s of services) {
  supervisor.start({
    name: s.name,
    command: process.execPath,
    args: [serviceEntry(s.name)],
    env: {
      JWT_PUBLIC_KEY_FILE: keys.jwksPath,
      CORS_ORIGINS: webOrigins.join(","),
      HOST: serviceHost,
      // Local development: no load balancer to wait for on shutdown.
      DRAIN_DELAY_MS: "0",
      // Local webhook receivers (http on loopback) are allowed here only; the services' own
      // defaults stay strict (https, public addresses).
      ...(s.name === "notification"
        ? {
            NOTIFICATION_ALLOW_HTTP: "true",
            NOTIFICATION_WEBHOOK_ALLOW_HOSTS: "127.0.0.1,localhost",
            NOTIFICATION_WEBHOOK_ALLOW_CIDRS: "127.0.0.0/8",
          }
        : {}),
      ...env,
      ...serverEnv,
      PORT: String(s.port),
      METRICS_PORT: String(s.metricsPort),
    },
    // The child's own "<name> ready" log line (it carries the child's pid): never a health check
    // that an orphan on the same port could answer.
    isReadyLine: (line, pid) => {
      if (!line.startsWith("{")) return false;
      try {
        const j = JSON.parse(line) as { msg?: unknown; pid?: unknown };
        return j.msg === `${s.name} ready` && j.pid === pid;
      } catch {
        return false;
      }
    },
    fatalExitCodes: [2],
  });
}

try {
  await Promise.all(services.map((s) => supervisor.waitReady(s.name, startTimeoutMs)));
} catch (e) {
  fail(e instanceof Error ? e.message : String(e));
  await shutdown("the mesh did not start", 1);
}
if (!shuttingDown && webEnabled) {
  const root = await pageBuilt;
  if (root) {
    web = await startWebServer({
      root,
      host: webHost,
      port: webPort,
      trackingUrl: `http://127.0.0.1:${port("tracking")}`,
      hubs: listWebHubs(),
    }).catch((e: unknown) => {
      fail(`tracking page not served: ${e instanceof Error ? e.message : String(e)}`);
      return undefined;
    });
  }
}
if (!shuttingDown && simulatorEnabled) {
  const hubs = new Map(listWebHubs().map((h) => [h.code, h]));
  const carrier = env["SIMULATOR_CARRIER"] ?? "acme";
  // The simulator runs as long as the mesh, for days maybe: hour-long tokens (shorter if the
  // services accept less), renewed at half their life, as a real gateway would do.
  const lifetimeSeconds = Math.min(3600, Number(env["JWT_MAX_LIFETIME_SECONDS"] || DEFAULT_MAX_TOKEN_LIFETIME_SEC));
  const renewing = (scopes: string[], extra: { carrier?: string } = {}) =>
    createRenewingToken({
      lifetimeSeconds,
      mint: (expiresIn) =>
        mintToken({
          privateJwkPath: keys.privateJwkPath,
          issuer: env["JWT_ISSUER"] ?? "logistics-dev",
          audience: env["JWT_AUDIENCE"] ?? "logistics-mesh",
          subject: "carrier-simulator",
          scopes,
          expiresIn,
          ...extra,
        }),
    });
  simulator = await startCarrierSimulator({
    ingestUrl: `http://127.0.0.1:${port("ingest")}`,
    routingUrl: `http://127.0.0.1:${port("routing")}`,
    scansToken: renewing([Scope.ScansWrite], { carrier }),
    shipmentsToken: renewing([Scope.ShipmentsWrite]),
    routesToken: renewing([Scope.RoutesRead]),
    carrierCode: carrier,
    shipments: Number(env["SIMULATOR_SHIPMENTS"] ?? 3),
    ...(env["SIMULATOR_INTERVAL_MS"] ? { scanIntervalMs: Number(env["SIMULATOR_INTERVAL_MS"]) } : {}),
    hubLocation: (code) => hubs.get(code),
    onEvent: (e) => {
      const line =
        e.type === "created"
          ? `${e.trackingNumber} created, route ${e.hubs.join(" → ")} (${e.route})`
          : e.type === "scan"
            ? `${e.trackingNumber} ${e.code}${e.hub ? ` at ${e.hub}` : ""}: ${e.outcome}`
            : `error: ${e.message}`;
      say("simulator", line);
    },
  }).catch((e: unknown) => {
    fail(`carrier simulator not started: ${e instanceof Error ? e.message : String(e)}`);
    return undefined;
  });
}
if (!shuttingDown) {
  const first = simulator?.trackingNumbers[0];
  const lines = [
    "",
    "logistics mesh is up:",
    ...services.map(
      (s) => `  ${s.name.padEnd(13)} http://127.0.0.1:${s.port}  (metrics http://127.0.0.1:${s.metricsPort}/metrics, pid ${supervisor.pids()[s.name] ?? "?"})`,
    ),
    ...(web ? [`  ${"web".padEnd(13)} ${web.url}/`] : []),
    "",
    ...(web && first
      ? ["  open the tracking page (a simulated parcel moves along its planned route for a few minutes):", `    ${web.url}/?t=${first}`, ""]
      : []),
    ...(simulator && simulator.trackingNumbers.length > 1
      ? [`  other simulated parcels: ${simulator.trackingNumbers.slice(1).join(", ")}`, ""]
      : []),
    `  grpcurl -plaintext 127.0.0.1:${port("ingest")} list`,
    "  token:  npm run -s token -- --scope scans:write --carrier acme",
    "A service that dies is restarted. Ctrl-C stops everything.",
    "",
  ];
  process.stdout.write(lines.join("\n") + "\n");
}
