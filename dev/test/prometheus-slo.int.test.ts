import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Scope } from "@logistics/shared/auth";
import { RejectReason, ScanOutcome } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import {
  findOnPath,
  repoRoot,
  startPrometheusServer,
  uniqueName,
  waitFor,
  type PrometheusAlert,
  type PrometheusServerHandle,
} from "@logistics/shared/testing";
import { openScanStream, type ScanStream } from "@logistics/ingest/client";
import { createTrackedShipment, startE2eMesh, type E2eMesh } from "./e2e-mesh.js";

const CARRIER = "acme";
const RULES = join(repoRoot, "charts", "logistics-mesh", "rules", "logistics-mesh.rules.yaml");

interface RuleFile {
  groups: Array<{ name: string; rules: Array<{ alert?: string; record?: string; expr: string; for?: string }> }>;
}

/**
 * The chart's rules as shipped, except every alert's `for` shortened to 2 s: the windows, the
 * thresholds and the expressions are the production ones; only waiting is shortened. JSON is YAML.
 */
async function testRules(): Promise<string> {
  const rules = parseYaml(await readFile(RULES, "utf8")) as RuleFile;
  for (const g of rules.groups) for (const r of g.rules) if (r.alert) r.for = "2s";
  return JSON.stringify(rules);
}

const hostPort = (url: string) => new URL(url).host;

/**
 * The SLO and backlog rules against the real mesh: ingest and tracking run with the backlog
 * sampled every 500 ms, a real Prometheus (Debian's package) scrapes them every second and
 * evaluates the chart's rules. Scans keep coming at ~10/s while the tracking projector is stopped
 * (tracking restarted without it, on the same metrics port): the projector's lag must grow in
 * Prometheus and the freshness SLO's page must fire; with the projector back the lag drains.
 */
describe("SLO alerts on a stalled projector (real Prometheus scraping the mesh)", () => {
  const prometheusBin = findOnPath("prometheus");
  const why = "no prometheus binary on PATH (install Debian's prometheus package)";
  let mesh: E2eMesh | undefined;
  let prom: PrometheusServerHandle | undefined;
  let stream: ScanStream | undefined;
  let sender: NodeJS.Timeout | undefined;
  const counts = { sent: 0, accepted: 0, failed: 0 };
  /** Why scans failed, by outcome and reason (or error), so a failure says what went wrong. */
  const failures = new Map<string, number>();
  const fail = (why: string) => {
    counts.failed++;
    failures.set(why, (failures.get(why) ?? 0) + 1);
  };

  beforeAll(async () => {
    if (!prometheusBin) return;
    mesh = await startE2eMesh({ services: ["ingest", "tracking"], env: { BACKLOG_SAMPLE_MS: "500" } });
    prom = await startPrometheusServer({
      binary: prometheusBin,
      targets: { ingest: [hostPort(mesh.get("ingest").metricsUrl)], tracking: [hostPort(mesh.get("tracking").metricsUrl)] },
      ruleFiles: [await testRules()],
      interval: "1s",
    });
  });

  afterAll(async () => {
    if (sender) clearInterval(sender);
    await stream?.close().catch(() => {});
    await prom?.stop();
    await mesh?.close();
  });

  const scalar = async (expr: string): Promise<number | undefined> => (await prom!.query(expr))[0]?.value;
  const freshnessAlerts = async (): Promise<PrometheusAlert[]> =>
    (await prom!.alerts()).filter((a) => a.labels["alertname"] === "ScanFreshnessBudgetBurn");
  const backlog = 'max(logistics_jetstream_consumer_pending_messages{consumer="tracking-scans"}) + max(logistics_jetstream_consumer_ack_pending_messages{consumer="tracking-scans"})';
  const oldestAge = 'max(logistics_jetstream_consumer_oldest_unprocessed_age_seconds{consumer="tracking-scans"})';

  it.skipIf(!prometheusBin)(
    prometheusBin
      ? "lag grows and the freshness page fires while the projector is stopped; the lag drains when it is back"
      : `lag grows and the freshness page fires while the projector is stopped (skipped: ${why})`,
    async (t) => {
      const m = mesh!;
      // The sender runs for up to the test's 8 minutes at ~10 scans/s: spread over 16 shipments so
      // none reaches ingest's per-shipment scan budget (~450 such scans), which would reject
      // scans with SHIPMENT_FULL, rightly, long before the test ends.
      const trackingNumbers = await Promise.all(
        Array.from({ length: 16 }, () => createTrackedShipment(m, { carrier: CARRIER, customer: "slo-shop" })),
      );

      // A carrier gateway scanning ~10 times a second for the whole test (load, not synchronization).
      stream = openScanStream({ address: `127.0.0.1:${m.get("ingest").port}`, token: await m.token([Scope.ScansWrite], { carrier: CARRIER }) });
      const open = stream;
      sender = setInterval(() => {
        const trackingNumber = trackingNumbers[counts.sent++ % trackingNumbers.length]!;
        open
          .send([{ eventId: uniqueName("slo-scan"), trackingNumber, carrierCode: CARRIER, rawStatus: { code: "PU", text: "Picked up" }, eventTime: timestampFromDate(new Date()) }])
          .then(([ack]) => {
            if (ack?.outcome === ScanOutcome.ACCEPTED) counts.accepted++;
            else fail(`${ScanOutcome[ack?.outcome ?? 0]} ${RejectReason[ack?.rejectReason ?? 0]}`);
          })
          .catch((e: unknown) => fail(String(e)));
      }, 100);

      // Healthy: both targets up, scans becoming visible, the freshness ratio recorded and low, no alert.
      await waitFor(async () => (await prom!.targets()).every((x) => x.health === "up") || undefined, { timeoutMs: 30_000, message: "both targets scraped" });
      const healthy = await waitFor(
        async () => {
          const ratio = await scalar("namespace:logistics_scan_not_visible:ratio_rate5m");
          const visible = await scalar("sum(logistics_tracking_ack_to_visible_seconds_count)");
          const alerts = await freshnessAlerts();
          return ratio !== undefined && ratio < 0.144 && (visible ?? 0) >= 20 && alerts.length === 0 ? { ratio, visible } : undefined;
        },
        // The ratio is over 5 minutes: scans made slow by a cold start while the rest of the suite
        // loads both cores count until enough healthy ones outweigh them (60 s was short twice in CI).
        { timeoutMs: 150_000, intervalMs: 500, message: "a healthy mesh in Prometheus: low freshness error ratio, no alert" },
      );
      assert.ok((await scalar(oldestAge)) !== undefined, "the projector's lag is exported while healthy");
      assert.equal(counts.failed, 0, `every scan accepted (failed: ${JSON.stringify(Object.fromEntries(failures))})`);

      // Stop the projector: tracking keeps serving (and sampling its consumers) on the same metrics port.
      const metricsPort = new URL(m.get("tracking").metricsUrl).port;
      const pausedAt = Date.now();
      await m.restart("tracking", undefined, { TRACKING_PROJECTOR_ENABLED: "false", METRICS_PORT: metricsPort });
      const acceptedAtPause = counts.accepted;

      // The lag grows in Prometheus: backlog messages and the oldest message's age, sample after sample.
      const first = await waitFor(async () => ((await scalar(backlog)) ?? 0) >= 10 ? scalar(backlog) : undefined, {
        timeoutMs: 60_000,
        intervalMs: 500,
        message: "the projector's backlog to show in Prometheus",
      });
      const grown = await waitFor(async () => {
        const [b, age] = [await scalar(backlog), await scalar(oldestAge)];
        return b !== undefined && age !== undefined && b >= first! + 20 && age >= 5 ? { backlog: b, age } : undefined;
      }, { timeoutMs: 60_000, intervalMs: 500, message: "the backlog and the oldest unprocessed age to keep growing" });
      assert.ok(counts.accepted - acceptedAtPause >= grown.backlog - first! - 1, "the backlog is the scans accepted since the pause");

      // The freshness SLO pages: every scan accepted since the pause is not visible.
      const firing = await waitFor(
        async () => (await freshnessAlerts()).find((a) => a.labels["severity"] === "page" && a.state === "firing"),
        { timeoutMs: 90_000, intervalMs: 500, message: "ScanFreshnessBudgetBurn (page) to fire" },
      );
      assert.equal(firing.labels["slo"], "scan_freshness");
      // The page alert fires on either window pair: 14.4x (ratio > 0.144) over 1 h and 5 m, or 6x
      // (ratio > 0.06) over 6 h and 30 m; the alert's value is the ratio of the pair that fired.
      assert.ok(Number(firing.value) > 0.06, `the recorded error ratio passed a page threshold (${firing.value})`);
      const firedAfter = (Date.now() - pausedAt) / 1000;

      // The projector back: the lag drains to nothing in Prometheus.
      await m.restart("tracking", undefined, { TRACKING_PROJECTOR_ENABLED: "true", METRICS_PORT: metricsPort });
      await waitFor(async () => (await scalar(oldestAge)) === 0 || undefined, { timeoutMs: 60_000, intervalMs: 500, message: "the lag to drain" });
      await t.annotate(
        `healthy ratio ${healthy.ratio.toFixed(3)} with ${healthy.visible} scans visible; paused: backlog ${first} → ${grown.backlog} messages, oldest ${grown.age.toFixed(1)} s; page fired ${firedAfter.toFixed(1)} s after the pause (ratio ${Number(firing.value).toFixed(3)}); ${counts.accepted} scans accepted in all`,
      );
    },
    480_000,
  );
});
