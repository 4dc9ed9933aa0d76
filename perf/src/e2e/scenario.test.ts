import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { buildSchedule, dueUntil, shipmentTemplates } from "./scenario.js";

describe("shipmentTemplates", () => {
  const now = Date.UTC(2026, 11, 2, 12);
  const templates = shipmentTemplates(now);

  it("scans every shipment along its planned route: 7–13 scans (10–16 events with creation, plan and delivery)", () => {
    assert.ok(templates.length >= 7);
    for (const t of templates) {
      assert.ok(t.scans.length >= 7 && t.scans.length <= 13, `${t.hubs.join(">")}: ${t.scans.length} scans`);
      assert.equal(t.scans[0]?.code, "PU");
      assert.deepEqual(t.scans.slice(-2).map((s) => s.code), ["OD", "DL"]);
      // Every hub of the route is arrived at, every hub but the last departed from.
      for (const hub of t.hubs) assert.ok(t.scans.some((s) => s.code === "AR" && s.hubCode === hub), `arrival at ${hub}`);
      for (const hub of t.hubs.slice(0, -1)) assert.ok(t.scans.some((s) => s.code === "DP" && s.hubCode === hub), `departure from ${hub}`);
    }
  });

  it("gives the scans the plan's own times: ordered, in the past, within ingest's 30-day window", () => {
    for (const t of templates) {
      const times = t.scans.map((s) => s.eventTimeMs);
      assert.deepEqual([...times].sort((a, b) => a - b), times, `${t.hubs.join(">")} in time order`);
      assert.ok(times.at(-1)! < now, "no scan from the future");
      assert.ok(times[0]! > now - 30 * 86_400_000);
    }
  });

  it("plans the same routes at any hour of a run when the scenario's hour is pinned, and from that hour", () => {
    const at1 = shipmentTemplates(Date.UTC(2026, 11, 2, 1, 44), undefined, 1);
    const at14 = shipmentTemplates(Date.UTC(2026, 11, 2, 14, 5), undefined, 1);
    assert.deepEqual(at14, at1);
    assert.equal(new Date(at1[0]!.readyAtMs).getUTCHours(), 1);
    // Unpinned, the run's own hour decides (and the routes may differ).
    assert.equal(new Date(shipmentTemplates(Date.UTC(2026, 11, 2, 14, 5))[0]!.readyAtMs).getUTCHours(), 14);
  });

  it("clears customs in the destination country on international lanes only, some after a hold", () => {
    const intl = templates.filter((t) => t.lane.origin.countryCode !== t.lane.destination.countryCode);
    for (const t of intl) assert.equal(t.scans.filter((s) => s.code === "CU").length, 1, t.hubs.join(">"));
    assert.ok(templates.some((t) => t.scans.some((s) => s.code === "CH")));
    for (const t of templates.filter((x) => !intl.includes(x))) assert.ok(!t.scans.some((s) => s.code === "CU"));
  });
});

describe("buildSchedule", () => {
  const per = [7, 9, 9, 11, 13];
  const o = { rate: 300, windowMs: 10_000, scansPerTemplate: per, scanGapMs: 400, createLeadMs: 1000 };
  const s = buildSchedule(o);

  it("offers the rate in every second of the window (the ramp is before it)", () => {
    assert.ok(Math.abs(s.scansInWindow - 3000) <= 30, `${s.scansInWindow} scans in the window`);
    for (let sec = 0; sec < 10; sec++) {
      const n = s.actions.filter((a) => a.kind === "scan" && a.at >= sec * 1000 && a.at < (sec + 1) * 1000).length;
      assert.ok(n >= 270 && n <= 330, `second ${sec}: ${n} scans`);
    }
    assert.ok(s.startsAt <= -(1000 + 12 * 400), `the ramp starts one shipment lifetime early (${s.startsAt})`);
    assert.ok(s.warmupScans > 0);
    assert.ok(s.actions.every((a) => a.at < o.windowMs), "nothing after the window");
  });

  it("with a warm-up, offers the full rate for that long before the window, after the same ramp", () => {
    const w = buildSchedule({ ...o, warmupMs: 6_000 });
    assert.ok(w.startsAt <= s.startsAt - 6_000, `starts ${w.startsAt} vs ${s.startsAt} without a warm-up`);
    assert.ok(Math.abs(w.scansInWindow - s.scansInWindow) <= 5, "the window is the same");
    // The warm-up's seconds (after the ramp: one lifetime of 5.8 s) carry the full rate.
    for (let sec = -6; sec < 0; sec++) {
      const n = w.actions.filter((a) => a.kind === "scan" && a.at >= sec * 1000 && a.at < (sec + 1) * 1000).length;
      assert.ok(n >= 270 && n <= 330, `warm-up second ${sec}: ${n} scans`);
    }
    assert.ok(w.warmupScans >= s.warmupScans + 6 * 270);
  });

  it("creates shipments at the matching rate, each before its first scan, with scans a gap apart", () => {
    const meanScans = per.reduce((a, b) => a + b, 0) / per.length;
    assert.ok(Math.abs(s.shipmentsCreatedInWindow - (300 / meanScans) * 10) <= 2, `${s.shipmentsCreatedInWindow} shipments created`);
    const createdAt = new Map<number, number>();
    const last = new Map<number, { at: number; step: number }>();
    for (const a of s.actions) {
      if (a.kind === "create") {
        createdAt.set(a.shipment, a.at);
        continue;
      }
      const c = createdAt.get(a.shipment);
      assert.ok(c !== undefined && a.at - c >= o.createLeadMs - 1e-6, "created first");
      const prev = last.get(a.shipment);
      if (prev) {
        assert.equal(a.step, prev.step + 1);
        assert.ok(Math.abs(a.at - prev.at - o.scanGapMs) < 1e-6);
      } else assert.equal(a.step, 0);
      last.set(a.shipment, { at: a.at, step: a.step });
    }
  });

  it("is sorted, so a pointer walks it", () => {
    for (let i = 1; i < s.actions.length; i++) assert.ok(s.actions[i - 1]!.at <= s.actions[i]!.at);
  });
});

describe("dueUntil", () => {
  it("catches up: after a late timer everything whose time has come is due at once", () => {
    const actions = Array.from({ length: 100 }, (_, i) => ({ at: i * 10 }));
    assert.equal(dueUntil(actions, 0, -1), 0);
    assert.equal(dueUntil(actions, 0, 0), 1);
    // The timer meant for t=10 fires at t=505: 51 actions are due, none is skipped.
    assert.equal(dueUntil(actions, 1, 505), 51);
    assert.equal(dueUntil(actions, 51, 10_000), 100);
  });
});
