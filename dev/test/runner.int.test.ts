import * as assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { TrackingService } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { getFreePort, repoRoot, waitFor } from "@logistics/shared/testing";
import { afterAll, beforeAll, describe, it } from "vitest";
import { portIsFree } from "../src/ports.js";

/*
 * `npm start` as a user runs it, with none of the servers the tests share: no DATABASE_URL,
 * NATS_URL or REDIS_URL, so the runner starts private ones on free ports, and every port it
 * listens on is a free one. Checks the supervisor: a healthy mesh with a scan visible through
 * tracking, restart of a killed service, refusal when a port is taken, and that SIGTERM or SIGHUP
 * to npm leaves no process behind.
 */

interface Runner {
  readonly proc: ChildProcess;
  readonly env: NodeJS.ProcessEnv;
  readonly ports: Record<string, number>;
  output(): string;
  /** Every pid the runner reported (services, restarted services, servers). */
  pids(): number[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const started: Runner[] = [];
const dirs: string[] = [];
const SERVICES = ["ingest", "routing", "tracking", "notification"] as const;

async function runnerEnv(extra: Record<string, string>): Promise<{ env: NodeJS.ProcessEnv; ports: Record<string, number> }> {
  const dir = await mkdtemp(join(tmpdir(), "runner-test-"));
  dirs.push(dir);
  const ports: Record<string, number> = {};
  const env: NodeJS.ProcessEnv = { ...process.env };
  // The servers the other tests share are not this runner's: it must start its own.
  delete env["DATABASE_URL"];
  delete env["NATS_URL"];
  delete env["REDIS_URL"];
  for (const s of SERVICES) {
    ports[s] = await getFreePort();
    ports[`${s}-metrics`] = await getFreePort();
    env[`${s.toUpperCase()}_PORT`] = String(ports[s]);
    env[`${s.toUpperCase()}_METRICS_PORT`] = String(ports[`${s}-metrics`]);
  }
  Object.assign(env, {
    MESH_DATA_DIR: join(dir, "data"),
    DEV_KEYS_DIR: join(dir, "keys"),
    WEB: "off",
    LOG_LEVEL: "info",
    ...extra,
  });
  return { env, ports };
}

function startRunner(command: string, args: readonly string[], env: NodeJS.ProcessEnv, ports: Record<string, number>): Runner {
  const proc = spawn(command, [...args], { cwd: repoRoot, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  proc.stdout!.on("data", (b: Buffer) => (out += b.toString("utf8")));
  proc.stderr!.on("data", (b: Buffer) => (out += b.toString("utf8")));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const r: Runner = {
    proc,
    env,
    ports,
    output: () => out,
    pids: () => [...out.matchAll(/\bpid (\d+)\b/g)].map((m) => Number(m[1])),
    exited,
  };
  started.push(r);
  return r;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/**
 * True when `pid` is still a process this runner started: its command line names the runner's
 * data folder (the servers) or its environment carries it (the services). A pid the runner
 * printed earlier may belong to any other process by now (pid_max is 32,768 here and the suite
 * starts thousands), which must never be signalled or counted.
 */
function ours(r: Runner, pid: number): boolean {
  const dir = r.env["MESH_DATA_DIR"];
  if (!dir || !alive(pid)) return false;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    const environ = readFileSync(`/proc/${pid}/environ`, "utf8");
    return cmdline.includes(dir) || environ.split("\0").includes(`MESH_DATA_DIR=${dir}`);
  } catch {
    return false;
  }
}

/**
 * Waits until `probe` returns a value, failing after `timeoutMs` with the runner's output at the
 * deadline (a message built with the call would show the output at the start).
 */
async function waitRunner<T>(r: Runner, probe: () => T | undefined, timeoutMs: number, message: string): Promise<T> {
  try {
    return await waitFor(probe, { timeoutMs, intervalMs: 100, message });
  } catch (err) {
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n--- output at the deadline ---\n${r.output().slice(-4000)}`, { cause: err });
  }
}

async function waitOutput(r: Runner, pattern: RegExp, timeoutMs = 150_000): Promise<RegExpMatchArray> {
  return waitRunner(r, () => pattern.exec(r.output()) ?? undefined, timeoutMs, `runner output to match ${pattern}`);
}

/**
 * Starts `npm start` on ports picked free and waits until the mesh is up. Another test's process
 * can take a picked port before the runner binds it: the runner then refuses to start ("a port is
 * taken") and exits, and this starts it again on new ports (at most three tries). Any other exit
 * before the mesh is up fails at once, with the runner's output.
 */
async function startMeshRunner(extra: Record<string, string>): Promise<Runner> {
  for (let attempt = 1; ; attempt++) {
    const { env, ports } = await runnerEnv(extra);
    const r = startRunner("npm", ["start"], env, ports);
    const exited = () => r.proc.exitCode !== null || r.proc.signalCode !== null;
    // A fresh mesh (the build check, a new PostgreSQL cluster, the servers, four services) while
    // the rest of the suite loads both cores: it took longer than 150 s once in CI.
    const outcome = await waitRunner(
      r,
      () => (/logistics mesh is up/.test(r.output()) ? "up" : exited() ? "exited" : undefined),
      270_000,
      "the runner to print that the mesh is up, or to exit",
    );
    if (outcome === "up") return r;
    if (attempt < 3 && /a port is taken/.test(r.output())) continue;
    throw new Error(`npm start exited before the mesh was up:\n${r.output().slice(-4000)}`);
  }
}

/** Stops a runner (SIGTERM to the given pid) and checks nothing it started is left. */
async function assertStopsClean(r: Runner, signal: NodeJS.Signals): Promise<void> {
  const pids = r.pids();
  assert.ok(pids.length >= 7, `the runner reported its services' and servers' pids: ${pids.join(", ")}`);
  r.proc.kill(signal);
  await r.exited;
  await waitFor(() => pids.every((p) => !ours(r, p)), {
    timeoutMs: 30_000,
    intervalMs: 100,
    message: `every process the runner started to be gone after ${signal}: still running ${pids.filter((p) => ours(r, p)).join(", ")}`,
  });
  for (const [what, port] of Object.entries(r.ports)) assert.ok(await portIsFree("127.0.0.1", port), `port of ${what} is free again`);
}

afterAll(async () => {
  for (const r of started) {
    r.proc.kill("SIGKILL");
    for (const p of r.pids()) if (ours(r, p)) process.kill(p, "SIGKILL");
  }
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe("npm start, with no server configured", () => {
  let r: Runner;
  beforeAll(async () => {
    r = await startMeshRunner({ SIMULATOR_SHIPMENTS: "1", SIMULATOR_INTERVAL_MS: "300" });
  }, 900_000);

  it("reaches a healthy mesh on private servers, and a simulated scan is visible through tracking", async () => {
    const out = r.output();
    for (const url of [/on (postgres:\/\/\S+)/, /on (nats:\/\/\S+)/, /on (redis:\/\/\S+)/].map((p) => p.exec(out)?.[1])) {
      assert.ok(url, `the runner says which server it started:\n${out.slice(0, 3000)}`);
      assert.ok(![5432, 4222, 6379].includes(Number(new URL(url).port)), `${url} is a private server on a free port`);
    }
    const trackingNumber = (await waitOutput(r, /simulator\s*\| (\w+) created/))[1]!;
    await waitOutput(r, new RegExp(`${trackingNumber} \\w+.*: ACCEPTED`));
    const tracking = createClient(TrackingService, createConnectTransport({ baseUrl: `http://127.0.0.1:${r.ports["tracking"]}`, httpVersion: "1.1" }));
    await waitFor(
      async () => {
        const s = (await tracking.getShipment({ trackingNumber }).catch(() => undefined))?.shipment;
        return s?.statusTime !== undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200, message: `a scan of ${trackingNumber} to be visible through tracking` },
    );
    // No service talks to whatever listens on the default ports of this machine.
    const servicePids = new Set(SERVICES.map((s) => Number(new RegExp(`${s}\\s+http://\\S+\\s+\\(metrics \\S+, pid (\\d+)\\)`).exec(out)?.[1])));
    const ss = spawnSync("ss", ["-Htnp", "state", "established"], { encoding: "utf8" }).stdout;
    const toDefaults = ss
      .split("\n")
      .filter((l) => /:(4222|5432|6379)\s/.test(l.split(/\s+/).slice(3, 5).join(" ")) && [...l.matchAll(/pid=(\d+)/g)].some((m) => servicePids.has(Number(m[1]))));
    assert.deepEqual(toDefaults, [], "no service connection to 127.0.0.1:4222/5432/6379");
  });

  it("restarts a service that dies, and prints it", async () => {
    const before = Number(/ingest\s+http:\/\/\S+\s+\(metrics \S+, pid (\d+)\)/.exec(r.output())?.[1]);
    assert.ok(ours(r, before), `pid ${before} is the runner's ingest`);
    process.kill(before, "SIGKILL");
    await waitOutput(r, /ingest exited \(killed by SIGKILL\) after [\d.]+ s; restarting it in \d+ s \(restart \d+\)/, 30_000);
    // An earlier restart (e.g. a port another process took first on a busy machine) may have
    // printed "up again" before: wait for the one that names a new, live process.
    let after = 0;
    await waitFor(
      () => {
        const pids = [...r.output().matchAll(/ingest is up again \(pid (\d+)\)/g)].map((m) => Number(m[1]));
        after = pids.find((p) => p !== before && ours(r, p)) ?? 0;
        return after !== 0;
      },
      { timeoutMs: 60_000, intervalMs: 100, message: "ingest up again in a new process" },
    );
    assert.notEqual(after, before);
  });

  it("refuses to start a second runner on the same ports, naming the port and its setting", async () => {
    const second = startRunner(process.execPath, ["dev/dist/main.js"], r.env, r.ports);
    const { code } = await second.exited;
    assert.equal(code, 1);
    const out = second.output();
    assert.match(out, new RegExp(`port ${r.ports["ingest"]} \\(ingest \\(gRPC/Connect\\)\\) is already in use.*set INGEST_PORT to another port`));
    assert.doesNotMatch(out, /servers\s*\|/, "nothing started");
  });

  it("stops every process it started and frees the ports on SIGTERM to npm", async () => {
    await assertStopsClean(r, "SIGTERM");
  });
});

describe("npm start, stopped by SIGHUP", () => {
  it("stops every process it started when npm gets SIGHUP (npm does not pass it on)", async () => {
    const r = await startMeshRunner({ SIMULATOR: "off" });
    await assertStopsClean(r, "SIGHUP");
    assert.match(r.output(), /the parent process \(\d+\) is gone: stopping/);
  }, 900_000);
});
