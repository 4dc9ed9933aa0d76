import {
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
  type StoredMsg,
} from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { millis, nanos } from "@nats-io/transport-node";
import { jetStreamApiPrefix } from "./regions.js";
import type { EnsureAction } from "./streams.js";
import type { BucketSpec } from "./subjects.js";

/** Options of {@link ensureKeyValue}. */
export interface EnsureKeyValueOptions {
  /** Replicas of the bucket's stream (3 in production, like the streams). Default 1. */
  replicas?: number;
  /** How long an entry lives after its last write; 0 keeps entries forever. Default 0. */
  maxAgeMs?: number;
  /** Values kept per key (1 = latest only). Default 1. */
  history?: number;
}

/** The outcome of {@link ensureKeyValue}. */
export interface EnsureKeyValueResult {
  readonly name: string;
  readonly action: EnsureAction;
  readonly kv: KV;
}

/** JetStream's "stream name already in use" (another replica created it with another config). */
const STREAM_NAME_IN_USE = 10058;

/**
 * Creates a key-value bucket, or brings an existing one in line with the spec and options: a
 * bucket whose replicas, max age or description differ is updated in place; a matching one is
 * left untouched, so every replica can call this at start-up (like `ensureStreams`). Resolves
 * with a handle bound through `js` (its request timeout applies to every operation).
 */
export async function ensureKeyValue(
  js: JetStreamClient,
  jsm: JetStreamManager,
  spec: BucketSpec,
  opts: EnsureKeyValueOptions = {},
): Promise<EnsureKeyValueResult> {
  const replicas = opts.replicas ?? 1;
  const maxAgeMs = opts.maxAgeMs ?? 0;
  const stream = `KV_${spec.name}`;
  const kvm = new Kvm(js);
  const before = await streamExists(jsm, stream);
  let kv: KV;
  try {
    kv = await kvm.create(spec.name, { replicas, ttl: maxAgeMs, history: opts.history ?? 1, description: spec.description });
  } catch (err) {
    if (!(err instanceof JetStreamApiError && err.code === STREAM_NAME_IN_USE)) throw err;
    kv = await kvm.open(spec.name);
  }
  if (!before) return { name: spec.name, action: "created", kv };
  const cfg = (await jsm.streams.info(stream)).config;
  const same = cfg.num_replicas === replicas && millis(cfg.max_age) === maxAgeMs && (cfg.description ?? "") === spec.description;
  if (same) return { name: spec.name, action: "unchanged", kv };
  await jsm.streams.update(stream, { ...cfg, num_replicas: replicas, max_age: nanos(maxAgeMs), description: spec.description });
  return { name: spec.name, action: "updated", kv };
}

/**
 * Binds to an existing bucket without creating it (for deployments that run with
 * ENSURE_STREAMS=false). Binding does not contact the server; operations on a missing bucket fail.
 */
export function openKeyValue(js: JetStreamClient, spec: BucketSpec): Promise<KV> {
  return new Kvm(js).open(spec.name);
}

async function streamExists(jsm: JetStreamManager, name: string): Promise<boolean> {
  try {
    await jsm.streams.info(name);
    return true;
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) return false;
    throw err;
  }
}

/** Options of {@link ensurePeerCopy}. */
export interface EnsurePeerCopyOptions {
  /** Replicas of the copy (like the bucket's). Default 1. */
  replicas?: number;
  /** How long a copied entry is kept; 0 keeps entries forever. Default 0 (use the bucket's max age). */
  maxAgeMs?: number;
}

/**
 * With several regions: creates or updates `spec.peerCopy`, a read-only stream (no subjects of
 * its own) that sources the bucket's stream `KV_<bucket>` from each peer region's domain and keeps
 * the latest entry per key. The local bucket itself never sources a peer: its subjects carry no
 * region, so two buckets sourcing each other would send every entry back and forth forever.
 * Read it with {@link readPeerEntry}. Does nothing without peers.
 */
export async function ensurePeerCopy(
  jsm: JetStreamManager,
  spec: BucketSpec,
  peers: readonly string[],
  opts: EnsurePeerCopyOptions = {},
): Promise<EnsureAction | undefined> {
  if (peers.length === 0) return undefined;
  const wanted = {
    description: `${spec.description}, as the peer regions wrote it`,
    num_replicas: opts.replicas ?? 1,
    max_age: nanos(opts.maxAgeMs ?? 0),
    max_msgs_per_subject: 1,
    sources: peers.map((peer) => ({ name: `KV_${spec.name}`, external: { api: jetStreamApiPrefix(peer), deliver: "" } })),
  };
  let cfg;
  try {
    cfg = (await jsm.streams.info(spec.peerCopy)).config;
  } catch (err) {
    if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)) throw err;
    try {
      await jsm.streams.add({
        ...wanted,
        name: spec.peerCopy,
        subjects: [],
        storage: StorageType.File,
        retention: RetentionPolicy.Limits,
        discard: DiscardPolicy.Old,
        allow_direct: true,
      });
      return "created";
    } catch (e) {
      if (!(e instanceof JetStreamApiError && e.code === STREAM_NAME_IN_USE)) throw e;
      return "unchanged";
    }
  }
  const key = (s: { external?: { api?: string } }) => s.external?.api ?? "";
  const same =
    cfg.num_replicas === wanted.num_replicas &&
    millis(cfg.max_age) === millis(wanted.max_age) &&
    (cfg.description ?? "") === wanted.description &&
    [...(cfg.sources ?? [])].map(key).sort().join() === wanted.sources.map(key).sort().join();
  if (same) return "unchanged";
  await jsm.streams.update(spec.peerCopy, { ...cfg, ...wanted });
  return "updated";
}

/**
 * The latest entry a peer region wrote for `key` (from `spec.peerCopy`, through the stream's
 * leader), or undefined when there is none or it was deleted.
 */
export async function readPeerEntry(jsm: JetStreamManager, spec: BucketSpec, key: string): Promise<StoredMsg | undefined> {
  let m: StoredMsg | null;
  try {
    m = await jsm.streams.getMessage(spec.peerCopy, { last_by_subj: `$KV.${spec.name}.${key}` });
  } catch (err) {
    if (err instanceof JetStreamApiError && (err.code === JetStreamApiCodes.NoMessageFound || err.code === JetStreamApiCodes.StreamNotFound)) return undefined;
    throw err;
  }
  const op = m?.header?.get("KV-Operation");
  return !m || (op && op !== "PUT") ? undefined : m;
}
