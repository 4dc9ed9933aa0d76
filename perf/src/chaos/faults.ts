/**
 * The faults a chaos run injects, each a script against the chaos mesh: inject, hold, heal. Every
 * choice a fault makes (which follower, which replica, how long) comes from the run's seeded
 * random numbers, so a seed repeats a run's schedule.
 */
import type { MeshServiceName } from "@logistics/dev";
import { MESH_SERVICES } from "@logistics/dev";
import { waitFor } from "@logistics/shared/testing";
import type { ChaosMesh } from "./chaos-mesh.js";
import type { JetStreamWatch } from "./jetstream-watch.js";

export { seededRandom } from "@logistics/shared/testing";

/** The names of the faults, in the order of the full schedule. */
export const FAULTS = [
  "nats-leader-kill",
  "nats-follower-kill",
  "nats-partition",
  "postgres-stop",
  "redis-kill",
  "rolling-restart",
  "consumer-kill-mid-batch",
] as const;
export type FaultName = (typeof FAULTS)[number];

export interface FaultContext {
  readonly mesh: ChaosMesh;
  readonly watch: JetStreamWatch;
  readonly random: () => number;
  /** ms since the run's epoch. */
  readonly now: () => number;
  readonly log: (line: string) => void;
}

/** What a fault did: when it was injected and healed, and a line saying what exactly. */
export interface FaultRun {
  readonly injectedAt: number;
  readonly healedAt: number;
  readonly detail: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pick = <T>(random: () => number, xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;

/** kill -9 of a JetStream node holding the scans stream (its leader, or a follower); restarted after `downMs`. */
async function killNatsNode(ctx: FaultContext, role: "leader" | "follower", downMs: number): Promise<FaultRun> {
  const stream = ctx.watch.streams.scans.name;
  const placement = await waitFor(() => ctx.watch.placement(stream), { timeoutMs: 30_000, intervalMs: 250, message: `${stream} to have a leader` });
  const target = role === "leader" ? placement.leader : pick(ctx.random, placement.replicas);
  const node = ctx.mesh.nats.servers.find((s) => s.serverName === target);
  if (!node) throw new Error(`no node named ${target}`);
  const injectedAt = ctx.now();
  await node.kill();
  ctx.log(`kill -9 ${target} (${role} of ${stream}); down for ${downMs} ms`);
  await sleep(downMs);
  await node.restart();
  const healedAt = ctx.now();
  const after = await ctx.watch.placement(stream);
  return { injectedAt, healedAt, detail: `kill -9 of ${role} ${target.replace(/^.*_/, "")}, restarted after ${(downMs / 1000).toFixed(1)} s; leader after: ${after?.leader.replace(/^.*_/, "") ?? "unknown"}` };
}

/**
 * Cuts the partitionable node off from the other two (and from its clients) for `holdMs`, then
 * heals. First asks the scans stream's leader to step down until that node leads (bounded), so the
 * minority side holds the leader: the case where acknowledged writes could be lost on healing.
 */
async function partitionNode(ctx: FaultContext, holdMs: number): Promise<FaultRun> {
  const part = ctx.mesh.nats.partition;
  if (!part) throw new Error("nats-partition needs the partitionable cluster (root and ip netns)");
  const stream = ctx.watch.streams.scans.name;
  const target = part.node.serverName;
  const short = (n: string | undefined) => n?.replace(/^.*_/, "") ?? "unknown";
  let placement = await ctx.watch.placement(stream);
  for (let i = 0; i < 8 && placement?.leader !== target; i++) {
    await ctx.watch.stepDown(stream).catch(() => {});
    await sleep(1500);
    placement = await ctx.watch.placement(stream);
  }
  const role = placement?.leader === target ? "leader" : "follower";
  const injectedAt = ctx.now();
  await part.cut();
  ctx.log(`partitioned ${target} (${role} of ${stream}) for ${holdMs} ms`);
  await sleep(holdMs);
  const during = await ctx.watch.placement(stream);
  await part.heal();
  const healedAt = ctx.now();
  return {
    injectedAt,
    healedAt,
    detail: `network partition (veth down) of ${short(target)}, the ${role} of the scans stream, from the other two nodes and its clients for ${(holdMs / 1000).toFixed(1)} s; leader on the majority side: ${short(during?.leader)}`,
  };
}

async function stopPostgres(ctx: FaultContext, downMs: number): Promise<FaultRun> {
  const injectedAt = ctx.now();
  await ctx.mesh.postgres.halt();
  ctx.log(`PostgreSQL stopped for ${downMs} ms`);
  await sleep(downMs);
  await ctx.mesh.postgres.start();
  return { injectedAt, healedAt: ctx.now(), detail: `PostgreSQL fast shutdown, started again after ${(downMs / 1000).toFixed(1)} s` };
}

async function killRedis(ctx: FaultContext, downMs: number): Promise<FaultRun> {
  const injectedAt = ctx.now();
  await ctx.mesh.redis.kill();
  ctx.log(`kill -9 redis-server; down for ${downMs} ms`);
  await sleep(downMs);
  await ctx.mesh.redis.restart();
  return { injectedAt, healedAt: ctx.now(), detail: `kill -9 of redis-server, restarted empty after ${(downMs / 1000).toFixed(1)} s` };
}

/** SIGTERM, wait for the exit, start and wait for SERVING: every replica of every service, one at a time. */
async function rollingRestart(ctx: FaultContext, services: readonly MeshServiceName[] = MESH_SERVICES): Promise<FaultRun> {
  const injectedAt = ctx.now();
  const codes: string[] = [];
  for (const service of services) {
    for (const r of ctx.mesh.replicas[service]) {
      const code = await r.terminate();
      codes.push(`${service}-${r.index}:${code}`);
      await r.start();
      ctx.log(`rolled ${service}-${r.index} (exit ${code})`);
    }
  }
  const bad = codes.filter((c) => !c.endsWith(":0"));
  return {
    injectedAt,
    healedAt: ctx.now(),
    detail: `SIGTERM, drain, start of ${codes.length} replicas one at a time; exit codes ${bad.length === 0 ? "all 0" : bad.join(", ")}`,
  };
}

/** kill -9 of a tracking replica while the projector's consumer has messages delivered and unacknowledged. */
async function killConsumerMidBatch(ctx: FaultContext, downMs: number): Promise<FaultRun> {
  const victim = pick(ctx.random, ctx.mesh.replicas.tracking);
  let ackPending = 0;
  let consumer = "";
  // Wait (bounded) for a moment the tracking consumers hold a batch in flight.
  const deadline = ctx.now() + 20_000;
  while (ctx.now() < deadline) {
    const s = await ctx.watch.sample();
    const hit = s && Object.entries(s.ackPending).find(([name, n]) => name.startsWith("tracking") && n > 0);
    if (hit) {
      [consumer, ackPending] = hit;
      break;
    }
    await sleep(20);
  }
  const injectedAt = ctx.now();
  await victim.kill();
  ctx.log(`kill -9 tracking-${victim.index} (${consumer || "no batch seen"} ack pending ${ackPending})`);
  await sleep(downMs);
  await victim.start();
  return {
    injectedAt,
    healedAt: ctx.now(),
    detail: `kill -9 of tracking-${victim.index} with ${ackPending} messages of ${consumer || "(none seen in 20 s)"} delivered and unacknowledged; started after ${(downMs / 1000).toFixed(1)} s`,
  };
}

/** Runs one fault by name; durations get a seeded jitter of up to +25 %. */
export function runFault(name: FaultName, ctx: FaultContext): Promise<FaultRun> {
  const jitter = (ms: number) => Math.round(ms * (1 + 0.25 * ctx.random()));
  switch (name) {
    case "nats-leader-kill":
      return killNatsNode(ctx, "leader", jitter(8000));
    case "nats-follower-kill":
      return killNatsNode(ctx, "follower", jitter(8000));
    case "nats-partition":
      return partitionNode(ctx, jitter(15_000));
    case "postgres-stop":
      return stopPostgres(ctx, 20_000);
    case "redis-kill":
      return killRedis(ctx, jitter(5000));
    case "rolling-restart":
      return rollingRestart(ctx);
    case "consumer-kill-mid-batch":
      return killConsumerMidBatch(ctx, jitter(3000));
  }
}
