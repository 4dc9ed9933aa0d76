import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, it } from "vitest";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { geoNaturalEarth1 } from "d3-geo";
import type { Browser, BrowserContextOptions, Page } from "playwright-core";
import { Scope } from "@logistics/shared/auth";
import type { PlaceSchema } from "@logistics/shared/gen/logistics/common/v1/geo_pb.js";
import { EtaChangeReason } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { ServiceLevel } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { IngestService, ScanOutcome } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { ShipmentEventKind, TrackingService, type Shipment } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { repoRoot, uniqueName, waitFor } from "@logistics/shared/testing";
import { listWebHubs } from "../src/hub-directory.js";
import { openScanStream, type ScanStream } from "@logistics/ingest/client";
import type { WebServerHandle } from "../src/web-server.js";
import type { E2eMesh } from "./e2e-mesh.js";
import { artifacts, browserMissing, startPageHarness, type PageHarness } from "./page-harness.js";

/*
 * The tracking page as a customer meets it (issue 18), in Debian's Chromium driven by
 * playwright-core, against a real mesh (ingest, routing, tracking on real sockets, NATS, PostgreSQL,
 * Redis): truthful ETAs for early, late and off-route parcels (the page and GetShipment agree),
 * plain words, the trans-Pacific map, English and Korean, keyboard use, polite live announcements,
 * reduced motion, axe-core, and the JavaScript budget. Screenshots go to test-artifacts/.
 */

const CARRIER = "acme";
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
const HOUR = 3_600_000;
const hubs = new Map(listWebHubs().map((h) => [h.code, h]));

type PlaceInit = MessageInitShape<typeof PlaceSchema>;
const place = (countryCode: string, city: string, latitude: number, longitude: number): PlaceInit => ({
  countryCode,
  city,
  location: { latitude, longitude },
});
const FRANKFURT = place("DE", "Frankfurt", 50.11, 8.68);
const CHICAGO = place("US", "Chicago", 41.88, -87.63);
const SHANGHAI = place("CN", "Shanghai", 31.23, 121.47);
const LONDON = place("GB", "London", 51.51, -0.13);
const SAO_PAULO = place("BR", "São Paulo", -23.55, -46.63);
const TOKYO = place("JP", "Tokyo", 35.68, 139.69);

const skip = browserMissing;
const title = "the tracking page a customer trusts (real browser, whole mesh)";

const iso = (t: Timestamp | undefined) => (t ? timestampDate(t).toISOString() : null);

/** One leg as the page shows it: hubs, and the instant and kind (actual or planned) of each time. */
interface LegReading {
  from?: string;
  to?: string;
  departure: string | null;
  departureKind: string | null;
  arrival: string | null;
  arrivalKind: string | null;
}

interface PageReading {
  eta: string | null;
  earliest: string | null;
  latest: string | null;
  reason: string | null;
  legs: LegReading[];
  history: number;
  text: string;
}

/** Runs in the page (plain JavaScript: the test's TypeScript has no DOM types). */
const READ_PAGE = `(() => {
  const attr = (sel, name) => document.querySelector(sel)?.getAttribute(name) ?? null;
  return {
    eta: attr("[data-testid=eta-time]", "datetime"),
    earliest: attr("[data-testid=eta-window]", "data-earliest"),
    latest: attr("[data-testid=eta-window]", "data-latest"),
    reason: attr("[data-testid=eta-reason]", "data-reason"),
    legs: [...document.querySelectorAll("[data-testid=legs] > li")].map((li) => {
      const t = (field) => li.querySelector("time[data-field=" + field + "]");
      return {
        from: li.dataset.from,
        to: li.dataset.to,
        departure: t("departure")?.getAttribute("datetime") ?? null,
        departureKind: t("departure")?.getAttribute("data-kind") ?? null,
        arrival: t("arrival")?.getAttribute("datetime") ?? null,
        arrivalKind: t("arrival")?.getAttribute("data-kind") ?? null,
      };
    }),
    history: document.querySelectorAll("[data-testid=timeline] > li").length,
    text: document.body.innerText,
  };
})()`;

interface Rect {
  left: number;
  top: number;
  right: number;
  bottom: number;
}

interface MapReading {
  /** The projection the page drew with (d3-geo Natural Earth, rotated and fitted). */
  rotate: number;
  scale: number;
  translate: [number, number];
  frame: Rect;
  /** Each drawn leg: its name ("GRU → NRT"), the number of separate pieces, 41 points along it. */
  legs: Array<{ name: string; moves: number; points: Array<[number, number]> }>;
  labels: Array<Rect & { text: string; size: number }>;
}

/** Runs in the page: the map's projection, its legs sampled along their length, its labels' boxes. */
const READ_MAP = `(() => {
  const svg = document.querySelector("svg.world-map");
  const box = (e) => { const r = e.getBoundingClientRect(); return { left: r.left, top: r.top, right: r.right, bottom: r.bottom }; };
  return {
    rotate: Number(svg.dataset.rotate),
    scale: Number(svg.dataset.scale),
    translate: svg.dataset.translate.split(",").map(Number),
    frame: box(svg),
    legs: [...svg.querySelectorAll("path.leg")].map((p) => {
      const length = p.getTotalLength();
      const points = Array.from({ length: 41 }, (_, i) => { const pt = p.getPointAtLength((length * i) / 40); return [pt.x, pt.y]; });
      return { name: p.dataset.leg, moves: (p.getAttribute("d").match(/M/g) || []).length, points };
    }),
    labels: [...svg.querySelectorAll("text.place-label")].map((t) => ({ text: t.textContent, size: parseFloat(getComputedStyle(t).fontSize), ...box(t) })),
  };
})()`;

describe.skipIf(skip !== undefined)(skip === undefined ? title : `${title} (skipped: ${skip})`, () => {
  let harness: PageHarness;
  let mesh: E2eMesh;
  let web: WebServerHandle;
  let browser: Browser;
  let scans: ScanStream;
  let ingest: ReturnType<typeof createClient<typeof IngestService>>;
  /** Anonymous, like the page: it gets the public view. */
  let tracking: ReturnType<typeof createClient<typeof TrackingService>>;
  let shipmentsToken: string;
  let axeSource: string;
  let scanNo = 0;

  beforeAll(async () => {
    harness = await startPageHarness({ services: ["ingest", "routing", "tracking"] });
    ({ mesh, web, browser } = harness);
    ingest = createClient(IngestService, createGrpcTransport({ baseUrl: mesh.get("ingest").url }));
    tracking = createClient(TrackingService, createGrpcTransport({ baseUrl: mesh.get("tracking").url }));
    shipmentsToken = await mesh.token([Scope.ShipmentsWrite]);
    scans = openScanStream({
      address: `127.0.0.1:${mesh.get("ingest").port}`,
      token: await mesh.token([Scope.ScansWrite], { carrier: CARRIER }),
    });
    axeSource = await readFile(join(repoRoot, "node_modules", "axe-core", "axe.min.js"), "utf8");
  });

  afterAll(async () => {
    await scans?.close();
    await harness?.close();
  });

  /** Creates a shipment and waits until tracking shows its planned route. */
  async function createShipment(origin: PlaceInit, destination: PlaceInit, serviceLevel: ServiceLevel, readyTime = new Date()) {
    const { trackingNumber } = await ingest.createShipment(
      {
        idempotencyKey: uniqueName("page-order"),
        carrierCode: CARRIER,
        customerId: "page-shop",
        serviceLevel,
        origin,
        destination,
        parcel: { weightGrams: 1200 },
        readyTime: timestampFromDate(readyTime),
      },
      { headers: { authorization: `Bearer ${shipmentsToken}` } },
    );
    return waitFor(
      async () => {
        const { shipment } = await tracking.getShipment({ trackingNumber });
        return shipment?.route?.legs.length ? shipment : undefined;
      },
      { timeoutMs: 30_000, message: `tracking shows ${trackingNumber} with its planned route` },
    );
  }

  /** Sends one carrier scan (generic codes: PU, AR, DP, OD...) with the hub's position. */
  async function scan(trackingNumber: string, code: string, hubCode = "", at = new Date()) {
    const hub = hubs.get(hubCode);
    const [ack] = await scans.send([
      {
        eventId: `page-${trackingNumber}-${++scanNo}`,
        trackingNumber,
        carrierCode: CARRIER,
        rawStatus: { code, text: `carrier text ${code}` },
        eventTime: timestampFromDate(at),
        hubCode,
        ...(hub ? { location: { latitude: hub.latitude, longitude: hub.longitude } } : {}),
      },
    ]);
    assert.equal(ack?.outcome, ScanOutcome.ACCEPTED, `scan ${code} at ${hubCode}: ${ack?.detail}`);
  }

  async function openPage(trackingNumber: string, o: BrowserContextOptions = {}): Promise<Page> {
    const context = await browser.newContext({ viewport: DESKTOP, deviceScaleFactor: 1, timezoneId: "Asia/Seoul", locale: "en-US", ...o });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    page.on("close", () => assert.deepEqual(errors, [], "no script errors on the page"));
    await page.goto(`${web.url}/?t=${trackingNumber}`);
    await page.locator("[data-testid=status]").waitFor({ timeout: 20_000 });
    await page.locator("svg.world-map path.land").waitFor({ timeout: 20_000 });
    return page;
  }

  async function close(page: Page) {
    const context = page.context();
    await page.close();
    await context.close();
  }

  /** Runs axe-core in the page and fails on serious or critical violations. */
  async function assertAccessible(page: Page, what: string) {
    if (!(await page.evaluate("typeof window.axe === 'object'"))) await page.addScriptTag({ content: axeSource });
    const result = (await page.evaluate("window.axe.run(document, { resultTypes: ['violations'] })")) as {
      violations: Array<{ id: string; impact: string | null; nodes: Array<{ target: unknown; failureSummary?: string }> }>;
      passes: unknown[];
    };
    const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
    process.stdout.write(
      `# axe ${what}: ${result.violations.length} violations (${bad.length} serious/critical)` +
        `${result.violations.map((v) => ` ${v.id}:${v.impact}`).join("")}\n`,
    );
    assert.deepEqual(
      bad.map((v) => ({ id: v.id, impact: v.impact, where: v.nodes.map((n) => n.target), why: v.nodes[0]?.failureSummary })),
      [],
      `axe: ${what}`,
    );
  }

  const REASON: Partial<Record<EtaChangeReason, string>> = {
    [EtaChangeReason.EARLY_ARRIVAL]: "early",
    [EtaChangeReason.EARLY_DEPARTURE]: "early",
    [EtaChangeReason.LATE_ARRIVAL]: "late",
    [EtaChangeReason.MISSED_CUTOFF]: "late",
    [EtaChangeReason.UNPLANNED_HUB]: "rerouted",
  };

  /** What the page shows, read from its machine-readable attributes (see READ_PAGE). */
  function readPage(page: Page): Promise<PageReading> {
    return page.evaluate(READ_PAGE) as Promise<PageReading>;
  }

  /** What the page must show for a shipment, from GetShipment's public view. */
  function expected(s: Shipment) {
    return {
      eta: iso(s.eta?.estimatedArrival),
      earliest: iso(s.eta?.earliest),
      latest: iso(s.eta?.latest),
      reason: REASON[s.etaChangeReason] ?? null,
      legs: (s.route?.legs ?? []).map((l) => ({
        from: l.fromHub,
        to: l.toHub,
        departure: iso(l.actualDeparture ?? l.plannedDeparture),
        departureKind: l.actualDeparture ? "actual" : "planned",
        arrival: iso(l.actualArrival ?? l.plannedArrival),
        arrivalKind: l.actualArrival ? "actual" : "planned",
      })),
    };
  }

  /**
   * Waits until the page shows exactly what GetShipment says (ETA, window, reason, every leg's
   * actual or planned times) and lists the same public history, then checks the customer words.
   */
  async function assertPageAgrees(page: Page, trackingNumber: string): Promise<Shipment> {
    let last: unknown;
    const shipment = await waitFor(
      async () => {
        const { shipment } = await tracking.getShipment({ trackingNumber });
        const { events } = await tracking.listShipmentEvents({ trackingNumber, pageSize: 500 });
        const shown = await readPage(page);
        const want = { ...expected(shipment!), history: events.length };
        const got = { eta: shown.eta, earliest: shown.earliest, latest: shown.latest, reason: shown.reason, legs: shown.legs, history: shown.history };
        last = { want, got };
        return JSON.stringify(want) === JSON.stringify(got) ? shipment : undefined;
      },
      { timeoutMs: 20_000, message: `the page agrees with GetShipment for ${trackingNumber}` },
    ).catch((e: unknown) => {
      assert.fail(`${String(e)}\n${JSON.stringify(last, null, 1)}`);
    });
    const { events } = await tracking.listShipmentEvents({ trackingNumber, pageSize: 500 });
    assert.ok(
      events.every((e) => e.kind !== ShipmentEventKind.ROUTE_PLANNED && e.kind !== ShipmentEventKind.ROUTE_UPDATED),
      "routing's events are not public",
    );
    assert.ok(events.every((e) => !e.carrierStatus?.code), "raw carrier codes are not public");
    const { text } = await readPage(page);
    for (const jargon of [/Route planned/i, /ETA moved/i, /ETA history/i, /\bcode [A-Z]{2}\b/, /% likely/, /confidence/i, /Something went wrong/]) {
      assert.doesNotMatch(text, jargon);
    }
    // One time-zone convention: the zone is named once, times carry no offsets of their own.
    assert.doesNotMatch(text, /(GMT|UTC)\s?[+−-]\d/);
    return shipment;
  }

  it("keeps the page's JavaScript within twice its committed budget", async () => {
    const budget = JSON.parse(await readFile(join(repoRoot, "services", "web", "js-budget.json"), "utf8")) as { gzipBytes: number };
    const assets = join(harness.outDir, "assets");
    let total = 0;
    const sizes: string[] = [];
    for (const f of (await readdir(assets)).filter((n) => n.endsWith(".js"))) {
      const gz = gzipSync(await readFile(join(assets, f))).length;
      total += gz;
      sizes.push(`${f} ${gz} B`);
    }
    process.stdout.write(`# page JavaScript, gzipped: ${total} B (budget ${budget.gzipBytes} B): ${sizes.join(", ")}\n`);
    assert.ok(total > 0);
    assert.ok(total <= 2 * budget.gzipBytes, `gzipped JavaScript ${total} B is more than twice the budget of ${budget.gzipBytes} B`);
  });

  it("re-plans an early parcel, and the page shows what GetShipment says (desktop and phone)", async () => {
    const s = await createShipment(SHANGHAI, LONDON, ServiceLevel.STANDARD);
    const first = s.route!.legs[0]!;
    // Planned departure is hours away (hub processing): leaving and arriving now is early.
    await scan(s.trackingNumber, "PU");
    await scan(s.trackingNumber, "DP", first.fromHub);
    await scan(s.trackingNumber, "AR", first.toHub);
    await waitFor(
      async () => {
        const r = (await tracking.getShipment({ trackingNumber: s.trackingNumber })).shipment?.etaChangeReason;
        return r === EtaChangeReason.EARLY_ARRIVAL || r === EtaChangeReason.EARLY_DEPARTURE;
      },
      { timeoutMs: 20_000, message: "routing re-planned the early parcel" },
    );
    for (const viewport of [DESKTOP, PHONE]) {
      const page = await openPage(s.trackingNumber, { viewport });
      const now = await assertPageAgrees(page, s.trackingNumber);
      const leg = now.route!.legs[0]!;
      assert.ok(leg.actualArrival && leg.actualDeparture, "the travelled leg carries both actual times");
      assert.ok(timestampDate(leg.actualArrival) < timestampDate(leg.plannedArrival!), "it arrived before its planned arrival");
      assert.equal(await page.locator("[data-testid=legs] > li").first().getAttribute("data-state"), "done");
      assert.match(await page.locator("[data-testid=legs] > li .early").first().innerText(), /early/);
      assert.equal(await page.locator("[data-testid=status]").innerText(), "In transit");
      await assertAccessible(page, `early parcel, ${viewport.width}px`);
      await page.screenshot({ path: join(artifacts, `tracking-page-early-${viewport.width}.png`), fullPage: true });
      await close(page);
    }
  });

  it("re-plans a late parcel and says it is delayed, with the new estimate (desktop and phone)", async () => {
    // Ready five days ago: its whole plan lies in the past, so arriving now is days late.
    const s = await createShipment(FRANKFURT, CHICAGO, ServiceLevel.EXPRESS, new Date(Date.now() - 5 * 24 * HOUR));
    const first = s.route!.legs[0]!;
    await scan(s.trackingNumber, "PU", "", new Date(Date.now() - 60_000));
    await scan(s.trackingNumber, "AR", first.toHub);
    await waitFor(
      async () => (await tracking.getShipment({ trackingNumber: s.trackingNumber })).shipment?.etaChangeReason === EtaChangeReason.LATE_ARRIVAL,
      { timeoutMs: 20_000, message: "routing re-planned the late parcel" },
    );
    for (const viewport of [DESKTOP, PHONE]) {
      const page = await openPage(s.trackingNumber, { viewport, colorScheme: viewport === PHONE ? "dark" : "light" });
      const now = await assertPageAgrees(page, s.trackingNumber);
      assert.ok(timestampDate(now.eta!.estimatedArrival!).getTime() > Date.now(), "the new estimate lies ahead");
      assert.equal(await page.locator("[data-testid=status]").innerText(), "Delayed");
      assert.equal(await page.locator("[data-testid=stepper] [aria-current=step]").getAttribute("data-step"), "inTransit");
      assert.match(await page.locator("[data-testid=legs] > li .late").first().innerText(), /late/);
      await assertAccessible(page, `late parcel, ${viewport.width}px, ${viewport === PHONE ? "dark" : "light"}`);
      await page.screenshot({ path: join(artifacts, `tracking-page-late-${viewport.width}.png`), fullPage: true });
      await close(page);
    }
  });

  it("re-routes a parcel scanned off its route and draws where it really went (desktop and phone)", async () => {
    const s = await createShipment(FRANKFURT, CHICAGO, ServiceLevel.EXPRESS);
    const onRoute = new Set(s.route!.legs.flatMap((l) => [l.fromHub, l.toHub]));
    const stray = ["AMS", "CDG", "LHR", "BRU"].find((c) => !onRoute.has(c))!;
    const start = s.route!.legs[0]!.fromHub;
    await scan(s.trackingNumber, "PU");
    await scan(s.trackingNumber, "AR", start);
    await scan(s.trackingNumber, "AR", stray);
    await waitFor(
      async () => {
        const now = (await tracking.getShipment({ trackingNumber: s.trackingNumber })).shipment;
        return now?.etaChangeReason === EtaChangeReason.UNPLANNED_HUB && now.route?.legs[0]?.fromHub === stray;
      },
      { timeoutMs: 20_000, message: "routing re-planned from the unplanned hub" },
    );
    for (const viewport of [DESKTOP, PHONE]) {
      const page = await openPage(s.trackingNumber, { viewport });
      await assertPageAgrees(page, s.trackingNumber);
      assert.equal(await page.locator(`svg.world-map path.leg.done[data-leg="${start} → ${stray}"]`).count(), 1, "the stretch off the plan is drawn as travelled");
      await assertAccessible(page, `re-routed parcel, ${viewport.width}px`);
      await page.screenshot({ path: join(artifacts, `tracking-page-rerouted-${viewport.width}.png`), fullPage: true });
      await close(page);
    }
  });

  it("draws a trans-Pacific route across the antimeridian, labels apart and readable (desktop and phone)", async () => {
    const s = await createShipment(SAO_PAULO, TOKYO, ServiceLevel.EXPRESS);
    const legs = s.route!.legs;
    await scan(s.trackingNumber, "PU");
    await scan(s.trackingNumber, "DP", legs[0]!.fromHub);
    await scan(s.trackingNumber, "AR", legs[0]!.toHub);
    const pacific = legs.some((l) => {
      const a = hubs.get(l.fromHub)!;
      const b = hubs.get(l.toHub)!;
      return Math.abs(a.longitude - b.longitude) > 180;
    });
    assert.ok(pacific, `the route crosses the antimeridian: ${legs.map((l) => `${l.fromHub}>${l.toHub}`).join(" ")}`);
    for (const viewport of [DESKTOP, PHONE]) {
      const page = await openPage(s.trackingNumber, { viewport });
      await assertPageAgrees(page, s.trackingNumber);
      const map = (await page.evaluate(READ_MAP)) as MapReading;
      // Map the drawn legs back to the globe with the page's own projection.
      const projection = geoNaturalEarth1().rotate([map.rotate, 0]).scale(map.scale).translate(map.translate);
      for (const leg of map.legs) {
        assert.equal(leg.moves, 1, `${leg.name} is one unbroken line`);
        const lons = leg.points.map((p) => projection.invert!(p)![0]);
        let unwrapped = lons[0]!;
        let min = unwrapped;
        let max = unwrapped;
        for (let i = 1; i < lons.length; i++) {
          const step = ((lons[i]! - lons[i - 1]! + 540) % 360) - 180;
          assert.ok(Math.abs(step) < 45, `${leg.name} does not jump across the map`);
          unwrapped += step;
          min = Math.min(min, unwrapped);
          max = Math.max(max, unwrapped);
        }
        assert.ok(max - min <= 180, `${leg.name} spans ${(max - min).toFixed(1)}° of longitude on screen`);
        const [from, to] = leg.name.split(" → ").map((c) => hubs.get(c)!);
        const [lon0, lat0] = projection.invert!(leg.points[0]!)!;
        const [lon1, lat1] = projection.invert!(leg.points[leg.points.length - 1]!)!;
        assert.ok(Math.abs(lon0 - from!.longitude) < 0.5 && Math.abs(lat0 - from!.latitude) < 0.5, `${leg.name} starts at ${from!.code}`);
        assert.ok(Math.abs(lon1 - to!.longitude) < 0.5 && Math.abs(lat1 - to!.latitude) < 0.5, `${leg.name} ends at ${to!.code}`);
      }
      assert.ok(map.labels.length >= 2, "origin and destination are labelled");
      for (const [i, a] of map.labels.entries()) {
        assert.ok(a.size >= 12, `label ${a.text} is readable (${a.size}px)`);
        assert.ok(a.left >= map.frame.left && a.right <= map.frame.right && a.top >= map.frame.top && a.bottom <= map.frame.bottom, `label ${a.text} stays on the map`);
        for (const b of map.labels.slice(i + 1)) {
          const apart = a.right <= b.left || b.right <= a.left || a.bottom <= b.top || b.bottom <= a.top;
          assert.ok(apart, `labels ${a.text} and ${b.text} do not overlap`);
        }
      }
      await assertAccessible(page, `trans-Pacific route, ${viewport.width}px`);
      await page.screenshot({ path: join(artifacts, `tracking-page-pacific-${viewport.width}.png`), fullPage: true });
      await close(page);
    }
  });

  it("speaks Korean to a Korean browser, in Korean dates, and switches to English from the keyboard", async () => {
    const s = await createShipment(SAO_PAULO, TOKYO, ServiceLevel.EXPRESS);
    await scan(s.trackingNumber, "PU");
    await scan(s.trackingNumber, "AR", s.route!.legs[0]!.fromHub);
    const page = await openPage(s.trackingNumber, { viewport: PHONE, locale: "ko-KR" });
    await waitFor(async () => (await page.locator("[data-testid=status]").innerText()) === "배송 중", { message: "Korean status" });
    assert.equal(await page.evaluate("document.documentElement.lang"), "ko");
    assert.equal(await page.locator("#page-title").innerText(), "배송 조회");
    assert.match(await page.locator("[data-testid=stepper]").innerText(), /송장 생성[\s\S]*배달 완료/);
    assert.match(await page.locator("[data-testid=eta-time]").innerText(), /\d+월 \d+일 [월화수목금토일]요일/);
    assert.match(await page.locator("[data-testid=timeline]").innerText(), /도착했습니다/);
    await assertAccessible(page, "Korean, phone");
    await page.screenshot({ path: join(artifacts, "tracking-page-korean-390.png"), fullPage: true });

    // Keyboard only: Shift+Tab from the tracking number field to the language switch, then an arrow key.
    await page.locator("#tracking-number").focus();
    await page.keyboard.press("Shift+Tab");
    assert.equal(await page.evaluate("document.activeElement.id"), "lang-select");
    await page.keyboard.press("ArrowUp");
    await waitFor(async () => (await page.evaluate("document.documentElement.lang")) === "en", { message: "switched to English" });
    await waitFor(async () => (await page.locator("[data-testid=status]").innerText()) === "In transit", { message: "English status" });
    assert.equal(await page.locator("#page-title").innerText(), "Track a parcel");
    await close(page);
  });

  it("works from the keyboard alone and answers bad input with a validation message", async () => {
    const s = await createShipment(SHANGHAI, LONDON, ServiceLevel.STANDARD);
    const context = await browser.newContext({ viewport: PHONE, locale: "en-US" });
    const page = await context.newPage();
    await page.goto(web.url);
    await page.locator("body[data-ready=true]").waitFor();
    assert.match((await page.locator("#tracking-number").getAttribute("placeholder")) ?? "", /LM[A-Z2-7]{10}/, "our own number format");
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate("document.activeElement.id"), "lang-select");
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate("document.activeElement.id"), "tracking-number");
    await page.keyboard.type("abc-123");
    await page.keyboard.press("Enter");
    const error = page.locator("#tn-error");
    await error.waitFor({ state: "visible" });
    assert.match(await error.innerText(), /“abc-123” is not a tracking number/);
    assert.equal(await page.locator("#tracking-number").getAttribute("aria-invalid"), "true");
    assert.equal(await page.evaluate("document.activeElement.id"), "tracking-number", "focus stays in the field");
    assert.equal(await page.locator("#banner").isHidden(), true, "no error banner for a typo");
    assert.doesNotMatch(await page.locator("body").innerText(), /Something went wrong/);
    await assertAccessible(page, "validation message");

    await page.keyboard.press("Control+A");
    await page.keyboard.type(s.trackingNumber.replace(/(.{4})/g, "$1 ").trim());
    await page.keyboard.press("Enter");
    await page.locator("[data-testid=status]").waitFor();
    assert.equal(await error.isHidden(), true);
    assert.equal(await page.locator("#tracking-number").inputValue(), s.trackingNumber);
    // The focus ring is visible for keyboard users.
    await page.keyboard.press("Shift+Tab");
    assert.equal(await page.evaluate("document.activeElement.id"), "lang-select");
    assert.equal(await page.evaluate("getComputedStyle(document.activeElement).outlineStyle"), "solid");
    await context.close();
  });

  it("announces live updates politely and keeps still for readers who ask for reduced motion", async () => {
    const s = await createShipment(FRANKFURT, CHICAGO, ServiceLevel.EXPRESS);
    await scan(s.trackingNumber, "PU");
    const page = await openPage(s.trackingNumber, { viewport: DESKTOP, reducedMotion: "no-preference" });
    await waitFor(async () => (await page.locator("[data-testid=status]").innerText()) === "Picked up", { message: "picked up" });
    const announcer = page.locator("#announcer");
    assert.equal(await announcer.getAttribute("aria-live"), "polite");
    assert.equal(await page.locator("#banner").getAttribute("aria-live"), "polite");
    await scan(s.trackingNumber, "AR", s.route!.legs[0]!.fromHub);
    await waitFor(async () => /In transit/.test(await announcer.innerText()), { timeoutMs: 20_000, message: "the change is announced" });
    assert.match(await announcer.innerText(), /Arrived in /);

    const ring = "getComputedStyle(document.querySelector('svg.world-map .current-ring')).animationName";
    assert.equal(await page.evaluate(ring), "pulse");
    await page.emulateMedia({ reducedMotion: "reduce" });
    assert.equal(await page.evaluate(ring), "none");
    assert.equal(await page.evaluate("getComputedStyle(document.querySelector('.live.on'), '::before').animationName"), "none");
    await close(page);
  });
});
