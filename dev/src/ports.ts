import { spawnSync } from "node:child_process";
import * as net from "node:net";

/** A port the runner is about to use, and the setting that moves it. */
export interface PlannedPort {
  readonly port: number;
  /** What listens there, e.g. "ingest (gRPC/Connect)". */
  readonly what: string;
  /** The environment variable that chooses another port. */
  readonly setting: string;
}

/** True when nothing listens on `host:port` (checked by binding it for a moment). */
export function portIsFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once("error", () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** `process-name (pid N)` of whatever listens on a TCP port, when `ss` can tell. */
export function portOwner(port: number): string | undefined {
  const r = spawnSync("ss", ["-Hltnp", `sport = :${port}`], { encoding: "utf8" });
  const m = r.status === 0 ? /users:\(\("([^"]+)",pid=(\d+)/.exec(r.stdout) : null;
  return m ? `${m[1]} (pid ${m[2]})` : undefined;
}

/**
 * One line per planned port that is already taken, naming what wanted it, who holds it (when known)
 * and the setting that moves it; empty when all are free. Ports planned twice are reported too.
 */
export async function takenPorts(host: string, planned: readonly PlannedPort[]): Promise<string[]> {
  const problems: string[] = [];
  const seen = new Map<number, PlannedPort>();
  for (const p of planned) {
    const twice = seen.get(p.port);
    if (twice) {
      problems.push(`port ${p.port} is planned for both ${twice.what} and ${p.what}: set ${p.setting} to another port`);
      continue;
    }
    seen.set(p.port, p);
    if (await portIsFree(host, p.port)) continue;
    const owner = portOwner(p.port);
    problems.push(`port ${p.port} (${p.what}) is already in use${owner ? ` by ${owner}` : ""}: stop that process or set ${p.setting} to another port`);
  }
  return problems;
}
