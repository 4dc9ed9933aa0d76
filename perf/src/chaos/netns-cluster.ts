/**
 * A three-node JetStream cluster whose third node can be cut off: nodes 1 and 2 run in this network
 * namespace, node 3 in a private one (`ip netns`) joined to it by a veth pair on a /30 of its own.
 * Taking the veth link down partitions node 3 from the other two (and from the clients connected
 * to it, as when a zone drops off the network); bringing it up heals. Needs root and iproute2.
 * Every address involved exists only on this machine, inside the namespace the run created.
 */
import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import * as http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getFreePort, removeOnExit, spawnManagedProcess, waitFor, type ManagedProcess } from "@logistics/shared/testing";

/** One node, as the faults drive it. */
export interface ClusterNode {
  readonly serverName: string;
  readonly url: string;
  readonly monitorUrl: string;
  readonly pid: number | undefined;
  isRunning(): boolean;
  /** SIGKILL, keeping the store. */
  kill(): Promise<void>;
  /** Starts the node again (stopping it first if it runs) on the same ports and store; resolves when healthy. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** The cluster the chaos mesh runs on. */
export interface ChaosCluster {
  readonly urls: string[];
  readonly servers: ClusterNode[];
  /** Cuts the partitionable node off (undefined for a plain loopback cluster). */
  readonly partition?: { readonly node: ClusterNode; cut(): Promise<void>; heal(): Promise<void> };
  stop(): Promise<void>;
}

/** True when this process may create network namespaces (root with `ip netns`). */
export function canPartition(): boolean {
  if (process.getuid?.() !== 0) return false;
  return spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).status === 0;
}

/** Namespaces of earlier runs whose process died without cleaning up (killed by a signal). */
function removeStaleNamespaces(): void {
  const list = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout ?? "";
  for (const m of list.matchAll(/^chx(\d+)ns\b/gm)) {
    const pid = Number(m[1]);
    let alive = false;
    try {
      process.kill(pid, 0);
      alive = true;
    } catch {
      alive = false;
    }
    if (!alive) spawnSync("ip", ["netns", "del", `chx${pid}ns`]);
  }
}

function ip(args: readonly string[]): void {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr || r.stdout}`);
}

function getJson(url: string, timeoutMs = 1000): Promise<unknown> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
        } catch {
          resolve(undefined);
        }
      });
      res.on("error", () => resolve(undefined));
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(undefined));
  });
}

/** Starts the cluster with node 3 in its own namespace; resolves when a meta leader has all peers current. */
export async function startPartitionableCluster(o: { startTimeoutMs?: number } = {}): Promise<ChaosCluster> {
  const tag = `chx${process.pid}`;
  const ns = `${tag}ns`;
  const hostIf = `${tag}h`;
  const nodeIf = `${tag}n`;
  // A /30 chosen from the process id, so two runs on one machine do not collide.
  const net = `10.${200 + (process.pid % 50)}.${Math.floor(process.pid / 50) % 250}`;
  const hostAddr = `${net}.1`;
  const nodeAddr = `${net}.2`;
  const removeNetns = () => spawnSync("ip", ["netns", "del", ns]);
  removeStaleNamespaces();
  ip(["netns", "add", ns]);
  process.once("exit", removeNetns);
  const dir = await mkdtemp(join(tmpdir(), "chaos-nats-"));
  const forgetDir = removeOnExit(dir);
  const nodes: ClusterNode[] = [];
  const cleanup = async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    removeNetns();
    process.off("exit", removeNetns);
    await rm(dir, { recursive: true, force: true });
    forgetDir();
  };
  try {
    ip(["link", "add", hostIf, "type", "veth", "peer", "name", nodeIf]);
    ip(["link", "set", nodeIf, "netns", ns]);
    ip(["addr", "add", `${hostAddr}/30`, "dev", hostIf]);
    ip(["link", "set", hostIf, "up"]);
    ip(["-n", ns, "addr", "add", `${nodeAddr}/30`, "dev", nodeIf]);
    ip(["-n", ns, "link", "set", nodeIf, "up"]);
    ip(["-n", ns, "link", "set", "lo", "up"]);

    const clusterName = `${tag}c`;
    const ports = await Promise.all([0, 1, 2].map(async () => ({ client: await getFreePort(), monitor: await getFreePort(), route: await getFreePort() })));
    // Nodes 1 and 2 serve clients on loopback and routes on the host end of the veth (reachable
    // from node 3); node 3 serves everything on its end.
    const addrOf = (i: number) => (i === 2 ? nodeAddr : "127.0.0.1");
    const routeAddrOf = (i: number) => (i === 2 ? nodeAddr : hostAddr);
    for (let i = 0; i < 3; i++) {
      const serverName = `${clusterName}_n${i + 1}`;
      const p = ports[i]!;
      const args = [
        "-a", addrOf(i),
        "-p", String(p.client),
        "-m", String(p.monitor),
        "--server_name", serverName,
        "-js", "-sd", join(dir, `n${i + 1}`),
        "--cluster_name", clusterName,
        "--cluster", `nats://${routeAddrOf(i)}:${p.route}`,
        "--routes", [0, 1, 2].filter((j) => j !== i).map((j) => `nats://${routeAddrOf(j)}:${ports[j]!.route}`).join(","),
      ];
      const monitorUrl = `http://${addrOf(i)}:${p.monitor}`;
      let proc: ManagedProcess | undefined;
      const launch = async () => {
        proc = i === 2 ? spawnManagedProcess("ip", ["netns", "exec", ns, "nats-server", ...args]) : spawnManagedProcess("nats-server", args);
        const running = proc;
        await waitFor(async () => ((await getJson(`${monitorUrl}/healthz`)) as { status?: string } | undefined)?.status === "ok", {
          timeoutMs: o.startTimeoutMs ?? 60_000,
          intervalMs: 100,
          message: `${serverName} healthy`,
          signal: running.exitSignal,
        });
      };
      nodes.push({
        serverName,
        url: `nats://${addrOf(i)}:${p.client}`,
        monitorUrl,
        get pid() {
          return proc?.pid;
        },
        isRunning: () => proc?.isRunning() ?? false,
        kill: async () => {
          if (proc?.isRunning()) await proc.stop("SIGKILL");
        },
        restart: async () => {
          if (proc?.isRunning()) await proc.stop("SIGTERM");
          await launch();
        },
        stop: async () => {
          if (proc?.isRunning()) await proc.stop("SIGTERM", 10_000);
        },
      });
    }
    // Start all three, then wait for them to agree on a meta leader with every peer current.
    await Promise.all(nodes.map((n) => n.restart()));
    await waitFor(
      async () => {
        const leaders = new Set<string>();
        for (const n of nodes) {
          const jsz = (await getJson(`${n.monitorUrl}/jsz`)) as { meta_cluster?: { leader?: string; replicas?: Array<{ current?: boolean }> } } | undefined;
          const meta = jsz?.meta_cluster;
          if (!meta?.leader) return false;
          if (meta.replicas && (meta.replicas.length < 2 || !meta.replicas.every((r) => r.current))) return false;
          leaders.add(meta.leader);
        }
        return leaders.size === 1;
      },
      { timeoutMs: o.startTimeoutMs ?? 60_000, intervalMs: 200, message: "the JetStream cluster to elect a meta leader with 3 current peers" },
    );
    let stopping: Promise<void> | undefined;
    return {
      urls: nodes.map((n) => n.url),
      servers: nodes,
      partition: {
        node: nodes[2]!,
        cut: async () => ip(["link", "set", hostIf, "down"]),
        heal: async () => ip(["link", "set", hostIf, "up"]),
      },
      stop: () => (stopping ??= cleanup()),
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}
