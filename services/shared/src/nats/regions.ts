import type { StreamSource } from "@nats-io/jetstream";
import { subjectToken, type StreamSpec } from "./subjects.js";

/**
 * The region model, built on NATS itself (no replication of our own).
 *
 * Each region runs its own nats-server (cluster) with JetStream **domain** = the region name, its
 * own mesh (the four services) and its own databases. Regions are joined with **leaf nodes**, not
 * with a gateway supercluster: a supercluster has one JetStream meta group for all its clusters,
 * and with two regions losing either one loses that group's quorum, so the survivor can create no
 * stream or consumer and a service restarted there cannot start. With leaf nodes each domain's
 * JetStream is independent and a region keeps working alone. (Gateways would work with a third,
 * small cluster holding the meta quorum tie-breaker; not done here.)
 *
 * - Events are produced, stored and acknowledged in their region: every subject carries the
 *   `<region>` token (`<p>.scan.recorded.<region>.<carrier>`), and every event its `region` field.
 * - The scans, shipments and routes streams of a region also **source** the peer regions' own
 *   events of the same stream, through the peer domain's API (`$JS.<peer>.API`), filtered by the
 *   peer's region token ({@link StreamSpec.regionFilter}). Only a peer's *own* events are sourced,
 *   never what it sourced itself, so nothing travels in a loop. Status changes and dead letters
 *   stay in their region; so do shipment personal data outside these events.
 * - The shipment directory (a key-value bucket) is not sourced into the local bucket (its
 *   subjects carry no region, so two buckets sourcing each other would loop); the peers' buckets
 *   are sourced into a separate read-only stream ({@link BucketSpec.peerCopy}) that ingest reads
 *   when its own bucket has no entry (a carrier that failed over scans a shipment of a peer).
 * - The leaf node connection must not carry the mesh's own subjects: a stream's subject interest
 *   crosses a leaf node, so without deny lists one publish is stored by the streams of both
 *   regions (measured with nats-server 2.9.10). {@link leafnodeDenyList} gives the list for both
 *   `deny_imports` and `deny_exports` of the leaf remote; only JetStream API and inbox traffic
 *   crosses.
 *
 * Consumers: tracking's projector reads every region's events (its idempotency by event id and
 * event-time rules make the merge order-independent) and publishes the status/ETA changes they
 * cause under its own region's token into its own status stream; notification reads only that,
 * so a subscription (held in one region) gets each change once, for scans ingested anywhere.
 * Routing plans only its own region's shipments and re-plans on every region's scans of the
 * shipments it planned.
 */

/** Where this deployment sits: its region and the peer regions it sources from. */
export interface RegionTopology {
  /** This region's name: a subject token and this region's JetStream domain. */
  readonly region: string;
  /** The other regions (JetStream domains) whose events this region sources; may be empty. */
  readonly peers: readonly string[];
}

/** The JetStream API prefix of a domain, as a source's `external.api`: `$JS.<domain>.API`. */
export function jetStreamApiPrefix(domain: string): string {
  return `$JS.${subjectToken("region", domain)}.API`;
}

/**
 * The sources of `spec` in a region whose peers are `peers`: the same-named stream of each peer,
 * filtered to that peer's own events. Empty for a stream that is not sourced across regions
 * (no `regionFilter`) or without peers.
 */
export function regionSources(spec: StreamSpec, peers: readonly string[]): StreamSource[] {
  const filter = spec.regionFilter;
  if (!filter) return [];
  return peers.map((peer) => ({
    name: spec.name,
    filter_subject: filter(peer),
    external: { api: jetStreamApiPrefix(peer), deliver: "" },
  }));
}

/**
 * The subjects a region's leaf node connection must deny in both directions (`deny_imports` and
 * `deny_exports` of the leaf remote): every mesh subject under `prefix` and every key-value
 * subject. Without them a stream in one region also captures the other region's publishes.
 */
export function leafnodeDenyList(prefix: string): string[] {
  return [`${subjectToken("prefix", prefix)}.>`, "$KV.>"];
}

/**
 * Checks a topology: the region and every peer a valid token, no duplicates, the region not
 * among its peers. Returns the problems (empty when fine).
 */
export function topologyProblems(t: RegionTopology): string[] {
  const problems: string[] = [];
  const bad = [t.region, ...t.peers].filter((r) => !/^[A-Za-z0-9_-]{1,64}$/.test(r));
  if (bad.length > 0) problems.push(`invalid region names ${JSON.stringify(bad)}: use 1-64 characters from [A-Za-z0-9_-]`);
  if (t.peers.includes(t.region)) problems.push(`region ${t.region} lists itself among its peers`);
  if (new Set(t.peers).size !== t.peers.length) problems.push("a peer region is listed twice");
  return problems;
}
