/**
 * Global setup of the `integration` and `browser` test projects: provides the PostgreSQL, NATS
 * (JetStream) and Redis every test reads through `DATABASE_URL` / `NATS_URL` / `REDIS_URL`
 * (`testDatabaseUrl()` etc. of `@logistics/shared/testing`). Servers named by those variables are
 * used as they are; otherwise private ones start on free loopback ports with their data under
 * `.dev-data/` (removed afterwards), so a run never depends on what listens on a default port.
 * The variables are set before the test workers start, so every worker inherits them. Both
 * projects share one set of servers (the second setup finds the first one's).
 */
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { DEV_DATA_DIR, provideMeshServers, type MeshServers } from "@logistics/dev";

interface Shared {
  servers: MeshServers;
  users: number;
}
const key = Symbol.for("logistics-mesh.test-servers");
const holder = globalThis as unknown as Record<symbol, Shared | undefined>;

export default async function setup(): Promise<() => Promise<void>> {
  let shared = holder[key];
  if (!shared) {
    await removeLeftovers();
    const servers = await provideMeshServers({
      database: "test",
      dataDir: join(DEV_DATA_DIR, `test-${process.pid}`),
      log: (line) => process.stderr.write(`test servers: ${line}\n`),
    });
    shared = { servers, users: 0 };
    holder[key] = shared;
    Object.assign(process.env, servers.env);
  }
  shared.users++;
  const mine = shared;
  return async () => {
    if (--mine.users > 0) return;
    holder[key] = undefined;
    await mine.servers.stop();
  };
}

/** Removes the data of earlier runs that were killed before their teardown. */
async function removeLeftovers(): Promise<void> {
  const names = await readdir(DEV_DATA_DIR).catch(() => [] as string[]);
  for (const name of names) {
    const pid = Number(/^test-(\d+)$/.exec(name)?.[1]);
    if (!pid || pid === process.pid || alive(pid)) continue;
    await rm(join(DEV_DATA_DIR, name), { recursive: true, force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
