/** The chaos run's report: Markdown for people, JSON for tools. Pure. */
import type { ChaosResult } from "./chaos-run.js";
import type { FaultFigures } from "./figures.js";

const ms = (v: number | undefined) => (v === undefined ? "not within the window" : v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : `${v} ms`);
const ratio = (v: number | undefined, base: number) => (v === undefined || base <= 0 ? "–" : `${(v / base).toFixed(1)}×`);
const errors = (e: Readonly<Record<string, number>>) =>
  Object.keys(e).length === 0
    ? "none"
    : Object.entries(e)
        .sort((a, b) => b[1] - a[1])
        .map(([k, n]) => `${k} ×${n}`)
        .join(", ");

export function chaosMarkdown(r: ChaosResult, command: string): string {
  const b = r.baseline;
  const c = r.checker;
  const row = (f: FaultFigures) =>
    `| ${f.name} | ${f.injectedAtS} s | ${f.outageS} s | ${ms(f.recoverMs)} | ${ms(f.longestAckGapMs)} (${ratio(f.longestAckGapMs, b.longestAckGapMs)}) | ${ms(f.backlogClearedMs)} | ${f.lagPeak} (${ratio(f.lagPeak, b.lagPeak)}) | ${ms(f.drainMs)} | ${errors(f.carrierErrors)} |`;
  const verdict = (n: number, allowed = 0) => (n <= allowed ? `${n} ✓` : `**${n} ✗**`);
  return [
    `# Chaos run ${r.startedAt.slice(0, 19)}Z, seed ${r.seed}`,
    "",
    `Repeat with \`${command}\`. ${r.checker.ok ? "**Checker: every invariant held.**" : "**Checker: invariants violated (see below).**"}`,
    "",
    `Mesh: a three-node nats-server cluster (every stream and bucket with 3 replicas), a private PostgreSQL and redis-server, every service as separate processes (${Object.entries(r.options.replicas ?? {}).map(([s, n]) => `${s} ×${n}`).join(", ") || "2 replicas each"}). Load: ${r.options.carriers.length} carrier gateways (${r.options.carriers.join(", ")}) × ${r.options.ratePerCarrier} scans/s, ${r.options.slots} shipments in flight each, over the resilient gateway (reconnect with backoff, resend every unacknowledged scan with its event id). Baseline ${r.options.baselineMs / 1000} s without faults, then each fault followed by ${r.options.settleMs / 1000} s of load. Run took ${r.durationS} s; load average at the end ${r.loadAverage.join(" / ")} (2 cores, shared machine).`,
    "",
    "## Per fault",
    "",
    "Ratios are against the baseline window of the same run. *Recover*: from injection until every carrier had a scan sent after the injection acknowledged. *Longest ack gap*: longest time without any final ack (ACCEPTED or DUPLICATE) across all carriers. *Backlog cleared*: until every scan sent before the heal was acknowledged. *Lag*: consumer backlog (pending + ack pending over every durable), peak and time from the peak back to the baseline's 95th percentile.",
    "",
    "| fault | at | outage | recover | longest ack gap | backlog cleared | lag peak | lag drain | carriers saw |",
    "|---|---|---|---|---|---|---|---|---|",
    row(b),
    ...r.faults.map(row),
    "",
    ...r.faults.map((f) => `- **${f.name}**: ${f.detail}`),
    "",
    "## Checker",
    "",
    "The checker knows only what the carriers recorded and what the public RPCs (TrackingService `ListShipmentEvents`, `GetShipment`) and the webhook receiver show at the end; its status model is its own.",
    "",
    "| invariant | result |",
    "|---|---|",
    `| scans sent / finally acknowledged | ${c.scansSent} / ${c.scansAcked} (unacknowledged at the end: ${verdict(c.unackedAtEnd)}) |`,
    `| acknowledged only as DUPLICATE (ACCEPTED ack lost with a broken stream) | ${c.ackedOnlyAsDuplicate} (allowed) |`,
    `| acknowledged scans lost | ${verdict(c.lost.length)} |`,
    `| scans applied twice | ${verdict(c.appliedTwice.length)} |`,
    `| visible but never acknowledged | ${verdict(c.visibleNeverAcked.length)} (visible and acknowledged only as DUPLICATE: ${c.visibleAckedOnlyAsDuplicate}, allowed) |`,
    `| scan events no carrier sent | ${verdict(c.unknownVisible)} |`,
    `| shipments whose status differs from the sequential model | ${verdict(c.statusMismatches.length)} of ${c.shipments} |`,
    `| webhooks missing (gaps in the status chain) | ${verdict(c.webhooks.missing.length)} |`,
    `| webhooks duplicated beyond at-least-once (two events for one shipment version) | ${verdict(c.webhooks.duplicated.length)} |`,
    `| webhook deliveries / distinct events / redeliveries of an event | ${c.webhooks.deliveries} / ${c.webhooks.distinctEvents} / ${c.webhooks.redeliveries} (redeliveries allowed: at least once) |`,
    `| scans finally rejected | ${verdict(c.finalRejections)} |`,
    `| dead letters (PostgreSQL outage must back off, not dead-letter) | ${verdict(c.deadLetters)} |`,
    "",
    ...(c.lost.length ? [`Lost: ${c.lost.slice(0, 20).join(", ")}`, ""] : []),
    ...(c.appliedTwice.length ? [`Applied twice: ${c.appliedTwice.slice(0, 20).join(", ")}`, ""] : []),
    ...(c.statusMismatches.length ? [`Status mismatches: ${c.statusMismatches.slice(0, 10).map((m) => `${m.trackingNumber} model ${m.model}, actual ${m.actual}`).join("; ")}`, ""] : []),
    ...(c.webhooks.missing.length ? [`Missing webhooks: ${c.webhooks.missing.slice(0, 10).map((m) => `${m.trackingNumber} ${m.what}`).join("; ")}`, ""] : []),
    "## Not exercised",
    "",
    ...(r.options.faults.includes("nats-partition")
      ? []
      : ["- A network partition of one NATS node (netns/veth): not in this run's schedule (it needs root and `ip netns`); kill -9 of the leader and of a follower cover a lost node, not one that keeps running on the minority side."]),
    "- Power loss of the whole cluster: a SIGKILL leaves the operating system's buffered writes in place, so this run proves replication and recovery, not fsync settings (charts/README.md, \"JetStream durability\").",
    "",
  ].join("\n");
}
