/**
 * `npm start`: runs the whole mesh locally against the NATS, Redis and PostgreSQL on this
 * machine. Each service runs as its own process (as in production), with dev signing keys, and
 * this runner prints where everything listens. Ctrl-C drains every service and exits.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ensureDevKeys } from "../../shared/src/auth/index.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../shared/src/gen/grpc/health/v1/health_pb.js";

const here = dirname(fileURLToPath(import.meta.url));
const dist = resolve(here, "..", "..");

interface Planned {
  name: string;
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
const children = new Map<string, ChildProcess>();
let stopping = false;

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
  const child = spawn(process.execPath, [join(dist, "services", s.name, "src", "main.js")], {
    env: {
      JWT_PUBLIC_KEY_FILE: keys.jwksPath,
      CORS_ORIGINS: "*",
      ...process.env,
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
      process.exit(process.exitCode ?? 0);
    }
  });
}

async function stop(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  process.exitCode = code;
  for (const child of children.values()) child.kill("SIGTERM");
  if (children.size === 0) process.exit(code);
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
if (!stopping) {
  const lines = [
    "",
    "logistics mesh is up:",
    ...services.map((s) => `  ${s.name.padEnd(13)} http://127.0.0.1:${s.port}  (metrics http://127.0.0.1:${s.metricsPort}/metrics)`),
    "",
    "  grpcurl -plaintext 127.0.0.1:8081 list",
    "  token:  npm run -s token -- --scope scans:write --carrier acme",
    "Ctrl-C stops everything.",
    "",
  ];
  process.stdout.write(lines.join("\n") + "\n");
}
