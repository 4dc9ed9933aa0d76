/**
 * `npm start`: runs the whole mesh locally. PostgreSQL, NATS and Redis are those named by
 * DATABASE_URL / NATS_URL / REDIS_URL, or private ones started here with their data under
 * `.dev-data/start/` (see infra.ts). Each service runs as its own process (as in production), with dev signing keys. The
 * runner also builds and serves the tracking page (WEB_PORT, default 8080; WEB=off skips it) and
 * runs a carrier simulator that moves a few parcels along their routes (SIMULATOR=off skips it),
 * then prints where everything listens and a tracking link to open. Ctrl-C drains every service
 * and exits.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ensureDevKeys, mintToken, Scope } from "@logistics/shared/auth";
import { Health, HealthCheckResponse_ServingStatus } from "@logistics/shared/gen/grpc/health/v1/health_pb.js";
import { startCarrierSimulator, type CarrierSimulator } from "./carrier-simulator.js";
import { listWebHubs } from "./hub-directory.js";
import { DEV_DATA_DIR, provideMeshServers } from "./infra.js";
import { serviceEntry, type MeshServiceName } from "./service-entry.js";
import { buildWebPage } from "./web-build.js";
import { startWebServer, type WebServerHandle } from "./web-server.js";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, "..", "..");
const webEnabled = process.env["WEB"] !== "off";
const simulatorEnabled = process.env["SIMULATOR"] !== "off";
const webHost = process.env["WEB_HOST"] ?? "127.0.0.1";
const webPort = Number(process.env["WEB_PORT"] ?? 8080);
const webOrigins = [`http://${webHost}:${webPort}`, `http://localhost:${webPort}`, `http://127.0.0.1:${webPort}`];

interface Planned {
  name: MeshServiceName;
  port: number;
  metricsPort: number;
}

const services: Planned[] = [
  { name: "ingest", port: Number(process.env["INGEST_PORT"] ?? 8081), metricsPort: 9101 },
  { name: "routing", port: Number(process.env["ROUTING_PORT"] ?? 8082), metricsPort: 9102 },
  { name: "tracking", port: Number(process.env["TRACKING_PORT"] ?? 8083), metricsPort: 9103 },
  { name: "notification", port: Number(process.env["NOTIFICATION_PORT"] ?? 8084), metricsPort: 9104 },
];

const keys = await ensureDevKeys(resolve(process.env["DEV_KEYS_DIR"] ?? ".dev-keys"));
const servers = await provideMeshServers({
  database: "mesh",
  dataDir: join(DEV_DATA_DIR, "start"),
  persistent: true,
  supervised: true,
  log: (line) => process.stdout.write(`${"servers".padEnd(12)}| ${line}\n`),
}).catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
const children = new Map<string, ChildProcess>();
let stopping = false;
let web: WebServerHandle | undefined;
let simulator: CarrierSimulator | undefined;
// Built while the services start; a failed build only costs the page, not the mesh.
const pageBuilt: Promise<string | undefined> = webEnabled
  ? buildWebPage({ repoRoot }).catch((e: unknown) => {
      process.stderr.write(`tracking page build failed: ${e instanceof Error ? e.message : String(e)}\n`);
      return undefined;
    })
  : Promise.resolve(undefined);

function prefixLines(name: string, stream: NodeJS.ReadableStream, out: NodeJS.WritableStream): void {
  let buf = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      out.write(`${name.padEnd(12)}| ${buf.slice(0, nl)}\n`);
      buf = buf.slice(nl + 1);
    }
  });
}

for (const s of services) {
  const child = spawn(process.execPath, [serviceEntry(s.name)], {
    env: {
      JWT_PUBLIC_KEY_FILE: keys.jwksPath,
      CORS_ORIGINS: webOrigins.join(","),
      ...process.env,
      ...servers.env,
      PORT: String(s.port),
      METRICS_PORT: String(s.metricsPort),
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.set(s.name, child);
  prefixLines(s.name, child.stdout!, process.stdout);
  prefixLines(s.name, child.stderr!, process.stderr);
  child.once("exit", (code, signal) => {
    children.delete(s.name);
    if (!stopping) {
      process.stderr.write(`${s.name} exited (${signal ?? code}); stopping the mesh\n`);
      void stop(1);
    } else if (children.size === 0) {
      void finish();
    }
  });
}

async function stop(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  process.exitCode = code;
  await simulator?.close().catch(() => {});
  await web?.close().catch(() => {});
  for (const child of children.values()) child.kill("SIGTERM");
  if (children.size === 0) await finish();
}

/** After the services: stops the servers started here, then exits. */
async function finish(): Promise<void> {
  await servers.stop().catch(() => {});
  process.exit(process.exitCode ?? 0);
}
process.once("SIGINT", () => void stop(0));
process.once("SIGTERM", () => void stop(0));

async function waitServing(s: Planned, deadline: number): Promise<void> {
  const client = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${s.port}` }));
  for (;;) {
    try {
      const res = await client.check({}, { timeoutMs: 1000 });
      if (res.status === HealthCheckResponse_ServingStatus.SERVING) return;
    } catch {
      // not listening yet
    }
    if (stopping) return;
    if (Date.now() > deadline) throw new Error(`${s.name} did not become healthy on port ${s.port}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

try {
  const deadline = Date.now() + 60_000;
  await Promise.all(services.map((s) => waitServing(s, deadline)));
} catch (e) {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  await stop(1);
}
const port = (name: string) => services.find((s) => s.name === name)!.port;
if (!stopping && webEnabled) {
  const root = await pageBuilt;
  if (root) {
    web = await startWebServer({
      root,
      host: webHost,
      port: webPort,
      trackingUrl: `http://127.0.0.1:${port("tracking")}`,
      hubs: listWebHubs(),
    }).catch((e: unknown) => {
      process.stderr.write(`tracking page not served: ${e instanceof Error ? e.message : String(e)}\n`);
      return undefined;
    });
  }
}
if (!stopping && simulatorEnabled) {
  const hubs = new Map(listWebHubs().map((h) => [h.code, h]));
  const carrier = process.env["SIMULATOR_CARRIER"] ?? "acme";
  const mint = (scopes: string[], extra: { carrier?: string } = {}) =>
    mintToken({
      privateJwkPath: keys.privateJwkPath,
      issuer: process.env["JWT_ISSUER"] ?? "logistics-dev",
      audience: process.env["JWT_AUDIENCE"] ?? "logistics-mesh",
      subject: "carrier-simulator",
      scopes,
      expiresIn: "30d",
      ...extra,
    });
  simulator = await startCarrierSimulator({
    ingestUrl: `http://127.0.0.1:${port("ingest")}`,
    routingUrl: `http://127.0.0.1:${port("routing")}`,
    scansToken: await mint([Scope.ScansWrite], { carrier }),
    shipmentsToken: await mint([Scope.ShipmentsWrite]),
    routesToken: await mint([Scope.RoutesRead]),
    carrierCode: carrier,
    shipments: Number(process.env["SIMULATOR_SHIPMENTS"] ?? 3),
    scanIntervalMs: Number(process.env["SIMULATOR_INTERVAL_MS"] ?? 5000),
    hubLocation: (code) => hubs.get(code),
    onEvent: (e) => {
      const line =
        e.type === "created"
          ? `${e.trackingNumber} created, route ${e.hubs.join(" → ")} (${e.route})`
          : e.type === "scan"
            ? `${e.trackingNumber} ${e.code}${e.hub ? ` at ${e.hub}` : ""}: ${e.outcome}`
            : `error: ${e.message}`;
      process.stdout.write(`${"simulator".padEnd(12)}| ${line}\n`);
    },
  }).catch((e: unknown) => {
    process.stderr.write(`carrier simulator not started: ${e instanceof Error ? e.message : String(e)}\n`);
    return undefined;
  });
}
if (!stopping) {
  const first = simulator?.trackingNumbers[0];
  const lines = [
    "",
    "logistics mesh is up:",
    ...services.map((s) => `  ${s.name.padEnd(13)} http://127.0.0.1:${s.port}  (metrics http://127.0.0.1:${s.metricsPort}/metrics)`),
    ...(web ? [`  ${"web".padEnd(13)} ${web.url}/`] : []),
    "",
    ...(web && first ? ["  open the tracking page (a simulated parcel moves every few seconds):", `    ${web.url}/?t=${first}`, ""] : []),
    ...(simulator && simulator.trackingNumbers.length > 1
      ? [`  other simulated parcels: ${simulator.trackingNumbers.slice(1).join(", ")}`, ""]
      : []),
    "  grpcurl -plaintext 127.0.0.1:8081 list",
    "  token:  npm run -s token -- --scope scans:write --carrier acme",
    "Ctrl-C stops everything.",
    "",
  ];
  process.stdout.write(lines.join("\n") + "\n");
}
