import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getFreePort } from "./free-port.js";
import { removeOnExit, spawnManagedProcess, type ManagedProcess } from "./managed-process.js";
import { waitFor } from "./wait-for.js";

/** Options for {@link startPrometheusServer}. */
export interface PrometheusServerOptions {
  /** Scrape jobs: job name → `host:port` targets (path /metrics, plain HTTP). */
  targets: Readonly<Record<string, readonly string[]>>;
  /** Rule files, as YAML text (written into the server's temporary directory). */
  ruleFiles?: readonly string[];
  /** Scrape and rule evaluation interval. Default "1s" (tests want answers in seconds). */
  interval?: string;
  /** The prometheus executable, resolved through PATH. Default "prometheus". */
  binary?: string;
  /** How long to wait for /-/ready. Default 30 000 ms. */
  startTimeoutMs?: number;
}

/** An alert as Prometheus' /api/v1/alerts reports it. */
export interface PrometheusAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: "pending" | "firing";
  activeAt: string;
  value: string;
}

/** One series of an instant query's result. */
export interface PrometheusSample {
  metric: Record<string, string>;
  value: number;
}

/** A running Prometheus started by {@link startPrometheusServer}. */
export interface PrometheusServerHandle {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  /** Instant query (`/api/v1/query`); rejects on a query error. */
  query(expr: string): Promise<PrometheusSample[]>;
  /** Active (pending and firing) alerts. */
  alerts(): Promise<PrometheusAlert[]>;
  /** Health of every scrape target, by `job`/`instance`. */
  targets(): Promise<Array<{ job: string; instance: string; health: string; lastError: string }>>;
  /** The last lines of the server's output. */
  logs(): string;
  /** Stops the server and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

interface ApiAnswer<T> {
  status: "success" | "error";
  data: T;
  error?: string;
}

/**
 * Starts a real Prometheus on a free loopback port with its configuration, rule files and TSDB in
 * a fresh temporary directory (removed by `stop()`, or when the test process exits), scraping
 * `targets` every `interval` and evaluating the rules as often. Resolves once `/-/ready` answers.
 */
export async function startPrometheusServer(opts: PrometheusServerOptions): Promise<PrometheusServerHandle> {
  const interval = opts.interval ?? "1s";
  const dir = await mkdtemp(join(tmpdir(), "prometheus-test-"));
  const forgetDir = removeOnExit(dir);
  let proc: ManagedProcess | undefined;
  const cleanup = async () => {
    if (proc?.isRunning()) await proc.stop("SIGTERM", 10_000);
    await rm(dir, { recursive: true, force: true });
    forgetDir();
  };
  try {
    const ruleFiles: string[] = [];
    for (const [i, text] of (opts.ruleFiles ?? []).entries()) {
      const path = join(dir, `rules-${i}.yaml`);
      await writeFile(path, text);
      ruleFiles.push(path);
    }
    const config = {
      global: { scrape_interval: interval, scrape_timeout: interval, evaluation_interval: interval },
      rule_files: ruleFiles,
      scrape_configs: Object.entries(opts.targets).map(([job, targets]) => ({ job_name: job, static_configs: [{ targets: [...targets] }] })),
    };
    // JSON is YAML: no YAML writer needed.
    await writeFile(join(dir, "prometheus.yml"), JSON.stringify(config, null, 2));
    const port = await getFreePort();
    const url = `http://127.0.0.1:${port}`;
    const p = spawnManagedProcess(opts.binary ?? "prometheus", [
      `--config.file=${join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--storage.tsdb.retention.time=1h",
      "--log.level=warn",
    ]);
    proc = p;
    await waitFor(async () => (await fetch(`${url}/-/ready`).catch(() => undefined))?.ok === true, {
      timeoutMs: opts.startTimeoutMs ?? 30_000,
      intervalMs: 100,
      message: `prometheus on port ${port} to become ready`,
      signal: p.exitSignal,
    }).catch((err: unknown) => {
      throw new Error(`${err instanceof Error ? err.message : String(err)}\n${p.output()}`, { cause: err });
    });

    const api = async <T>(path: string): Promise<T> => {
      const res = await fetch(`${url}${path}`);
      const body = (await res.json()) as ApiAnswer<T>;
      if (body.status !== "success") throw new Error(`prometheus ${path}: ${body.error ?? res.status}`);
      return body.data;
    };
    let stopping: Promise<void> | undefined;
    return {
      url,
      async query(expr) {
        const data = await api<{ result: Array<{ metric: Record<string, string>; value: [number, string] }> }>(
          `/api/v1/query?query=${encodeURIComponent(expr)}`,
        );
        return data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
      },
      alerts: async () => (await api<{ alerts: PrometheusAlert[] }>("/api/v1/alerts")).alerts,
      async targets() {
        const data = await api<{ activeTargets: Array<{ labels: Record<string, string>; health: string; lastError: string }> }>("/api/v1/targets");
        return data.activeTargets.map((t) => ({ job: t.labels["job"] ?? "", instance: t.labels["instance"] ?? "", health: t.health, lastError: t.lastError }));
      },
      logs: () => p.output(),
      stop: () => (stopping ??= cleanup()),
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
