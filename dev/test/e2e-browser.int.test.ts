import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, it } from "vitest";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Browser, Page } from "playwright-core";
import { Scope } from "@logistics/shared/auth";
import { ServiceLevel } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { IngestService, ScanOutcome } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { TrackingService } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import { openScanStream, type ScanStream } from "@logistics/ingest/client";
import type { WebServerHandle } from "../src/web-server.js";
import type { E2eMesh } from "./e2e-mesh.js";
import { artifacts, browserMissing, startPageHarness, type PageHarness } from "./page-harness.js";

const CARRIER = "acme";
const skip = browserMissing;
const title = "the tracking page in a real browser, against the whole mesh";

describe.skipIf(skip !== undefined)(skip === undefined ? title : `${title} (skipped: ${skip})`, () => {
  let harness: PageHarness;
  let mesh: E2eMesh;
  let web: WebServerHandle;
  let browser: Browser;
  let scans: ScanStream;
  let trackingNumber: string;
  let page: Page;
  let trackingPort: number;
  let scanNo = 0;

  beforeAll(async () => {
    harness = await startPageHarness({ services: ["ingest", "routing", "tracking"], optional: ["routing"] });
    ({ mesh, web, browser } = harness);
    trackingPort = mesh.get("tracking").port;
    scans = openScanStream({
      address: `127.0.0.1:${mesh.get("ingest").port}`,
      token: await mesh.token([Scope.ScansWrite], { carrier: CARRIER }),
    });
  });

  afterAll(async () => {
    await scans?.close();
    await harness?.close();
  });

  async function scan(code: string, hubCode = "", location?: { latitude: number; longitude: number }) {
    const [ack] = await scans.send([
      {
        eventId: `e2e-${trackingNumber}-${++scanNo}`,
        trackingNumber,
        carrierCode: CARRIER,
        rawStatus: { code, text: `e2e ${code}` },
        eventTime: timestampFromDate(new Date()),
        hubCode,
        ...(location ? { location } : {}),
      },
    ]);
    assert.equal(ack?.outcome, ScanOutcome.ACCEPTED, `scan ${code}: ${ack?.detail}`);
  }

  const statusText = () => page.locator("[data-testid=status]").textContent({ timeout: 1000 });
  async function waitForStatus(label: string, timeoutMs = 20_000) {
    await waitFor(async () => (await statusText()) === label, { timeoutMs, message: `page shows status "${label}"` });
  }

  it("shows a new shipment and each status a scan brings, live, without a reload", async () => {
    const ingest = createClient(IngestService, createGrpcTransport({ baseUrl: mesh.get("ingest").url }));
    const created = await ingest.createShipment(
      {
        idempotencyKey: uniqueName("e2e-order"),
        carrierCode: CARRIER,
        customerId: "e2e-shop",
        serviceLevel: ServiceLevel.EXPRESS,
        origin: { countryCode: "DE", city: "Frankfurt", location: { latitude: 50.11, longitude: 8.68 } },
        destination: { countryCode: "US", city: "Chicago", location: { latitude: 41.88, longitude: -87.63 } },
        parcel: { weightGrams: 1200 },
        readyTime: timestampFromDate(new Date()),
      },
      { headers: { authorization: `Bearer ${await mesh.token([Scope.ShipmentsWrite])}` } },
    );
    trackingNumber = created.trackingNumber;
    const tracking = createClient(TrackingService, createGrpcTransport({ baseUrl: mesh.get("tracking").url }));
    await waitFor(() => tracking.getShipment({ trackingNumber }).then(() => true), {
      timeoutMs: 20_000,
      message: "tracking knows the new shipment",
    });

    page = await browser.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 1 });
    const consoleErrors: string[] = [];
    page.on("pageerror", (e) => consoleErrors.push(e.message));
    await page.goto(`${web.url}/?t=${trackingNumber}`);
    await waitForStatus("Label created");
    // A marker that a reload would wipe out.
    await page.evaluate("window.e2eMarker = 'still-here'");

    await scan("PU", "", { latitude: 50.11, longitude: 8.68 });
    await waitForStatus("Picked up");
    await scan("AR", "FRA", { latitude: 50.03, longitude: 8.57 });
    await waitFor(async () => (await page.locator("[data-testid=timeline] li").count()) >= 3, {
      timeoutMs: 20_000,
      message: "timeline lists the created event and both scans",
    });
    await scan("OD", "", { latitude: 41.88, longitude: -87.63 });
    await waitForStatus("Out for delivery");

    assert.equal(await page.evaluate("window.e2eMarker"), "still-here", "no reload");
    const timeline = await page.locator("[data-testid=timeline]").innerText();
    assert.match(timeline, /Arrived in Frankfurt, Germany/, "the hub scan names the hub's city and country");
    assert.doesNotMatch(timeline, /(GMT|UTC)\s?[+−-]\d/, "one time zone for the page, named once");
    assert.equal(await page.locator("svg.world-map").count(), 1, "the route map is drawn");
    assert.equal(await page.locator("#banner").isHidden(), true, "no error banner while live");
    assert.deepEqual(consoleErrors, []);
  });

  it("says the connection is lost while tracking is down, then resumes and shows what it missed", async () => {
    assert.ok(page, "runs after the first test");
    await mesh.stop("tracking");
    await waitFor(async () => (await page.locator("#banner").getAttribute("data-state")) === "retrying", {
      timeoutMs: 20_000,
      message: "page shows the retrying state",
    });
    assert.match(await page.locator("#banner").innerText(), /Connection lost/);
    await page.screenshot({ path: join(artifacts, "e2e-browser-retrying.png") });

    // Happens while the page is disconnected: it must arrive after the resume.
    await scan("DA", "", { latitude: 41.88, longitude: -87.63 });
    await mesh.restart("tracking", trackingPort);
    await waitFor(async () => (await page.locator("#banner").getAttribute("data-state")) === "live", {
      timeoutMs: 30_000,
      message: "page reconnects",
    });
    await waitForStatus("Delivery attempted", 20_000);
    await scan("DL", "", { latitude: 41.88, longitude: -87.63 });
    await waitForStatus("Delivered");
    assert.equal(await page.evaluate("window.e2eMarker"), "still-here", "still no reload");
    const texts = await page.locator("[data-testid=timeline] li").allInnerTexts();
    assert.ok(texts.length >= 6, `timeline has every event once: ${JSON.stringify(texts)}`);
    await mkdir(artifacts, { recursive: true });
    await page.screenshot({ path: join(artifacts, "e2e-browser-phone.png"), fullPage: true });
  });

  it("says so when no shipment has the tracking number", async () => {
    const p = await browser.newPage({ viewport: { width: 390, height: 844 } });
    try {
      await p.goto(`${web.url}/?t=NOSUCHPARCEL123`);
      await waitFor(async () => (await p.locator("#banner").getAttribute("data-state")) === "not-found", {
        timeoutMs: 15_000,
        message: "not-found banner",
      });
      assert.match(await p.locator("#banner").innerText(), /can't find a parcel with tracking number NOSUCHPARCEL123/);
      assert.equal(await p.locator("#result").isHidden(), true);
    } finally {
      await p.close();
    }
  });
});
