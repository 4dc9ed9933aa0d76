/**
 * Generates the hub network data (hubs, lanes, schedules) from the seed list, deterministically:
 * the same seeds always produce byte-identical output, which is committed.
 *
 *   npm run build && node services/routing/dist/scripts/generate-network.js [output file]
 *
 * Lanes:
 * - ROAD between any two hubs less than 800 km apart on the same continent and landmass;
 * - RAIL along the listed corridors;
 * - AIR between airports, hub-and-spoke: each airport to its 4 nearest airports (at least 150 km
 *   away), to the gateway airports of its continent and to the 2 nearest gateways anywhere;
 *   gateways connect to every other gateway;
 * - SEA between seaports, the same way with the 4 nearest ports and the gateway ports.
 * Every lane exists in both directions. Transit time comes from the great-circle distance, a
 * mode-specific detour factor and speed, plus fixed handling; schedules are fixed UTC times
 * chosen by a hash of the lane, so nothing depends on the run.
 */
import { writeFileSync } from "node:fs";
import { haversineKm } from "../geo.js";
import type { HubKindName, HubNetworkData, HubRecord, LaneRecord, ModeName } from "../hub-network.js";
import { hubSeeds, railCorridors, type HubSeed } from "./hub-seeds.js";

const ROAD_MAX_KM = 800;
const AIR_NEAREST = 4;
const AIR_MIN_KM = 150;
const SEA_NEAREST = 4;
const DAILY = 0b1111111;

/** FNV-1a, 32 bit: a stable hash for schedule choices. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

const processingMin = (s: HubSeed): number => {
  switch (s.kind) {
    case "AIRPORT":
      return s.gateway ? 180 : 120;
    case "SEAPORT":
      return 720;
    case "RAIL_TERMINAL":
      return 240;
    case "ROAD_HUB":
      return 60;
  }
};

const cutoffMin: Record<ModeName, number> = { AIR: 90, ROAD: 30, RAIL: 120, SEA: 1440 };

/** Door-to-door minutes of one lane (without hub processing). */
function transitMin(mode: ModeName, km: number): number {
  switch (mode) {
    case "AIR":
      return Math.round((km / 800) * 60 + 60);
    case "ROAD": {
      const drive = ((km * 1.25) / 70) * 60;
      const rests = Math.floor(drive / 540) * 660; // an 11 h rest after each 9 h of driving
      return Math.round(drive + rests + 30);
    }
    case "RAIL":
      return Math.round(((km * 1.2) / 45) * 60 + 180);
    case "SEA":
      return Math.round(((km * 1.4) / 33) * 60 + 720);
  }
}

/** Days mask and UTC minutes of day of a lane's departures. */
function schedule(mode: ModeName, a: HubSeed, b: HubSeed, km: number): [number, number[]] {
  const h = hash(`${a.code}-${b.code}-${mode}`);
  switch (mode) {
    case "AIR": {
      const perDay = a.gateway && b.gateway ? 3 : a.gateway || b.gateway ? 2 : 1;
      const first = h % 24;
      return [DAILY, Array.from({ length: perDay }, (_, i) => ((first + i * 8) % 24) * 60)];
    }
    case "ROAD": {
      const every = 4 + (h % 5); // every 4 to 8 hours
      const offset = ((h >>> 3) % every) * 60 + ((h >>> 7) % 2) * 30;
      const times: number[] = [];
      for (let m = offset; m < 1440; m += every * 60) times.push(m);
      return [DAILY, times];
    }
    case "RAIL": {
      if (km > 3000) {
        // Long-haul block trains: three departures a week.
        const d = h % 7;
        return [(1 << d) | (1 << ((d + 2) % 7)) | (1 << ((d + 4) % 7)), [((h >>> 4) % 24) * 60]];
      }
      const first = (h >>> 4) % 12;
      return [DAILY, [first * 60, (first + 12) * 60]];
    }
    case "SEA": {
      const d = h % 7;
      const mask = a.gateway && b.gateway ? (1 << d) | (1 << ((d + 3) % 7)) : 1 << d;
      return [mask, [((h >>> 4) % 24) * 60]];
    }
  }
}

function generate(): HubNetworkData {
  const seeds = [...hubSeeds];
  const codes = new Set<string>();
  for (const s of seeds) {
    if (!/^[A-Z0-9]{3,8}$/.test(s.code)) throw new Error(`bad hub code ${s.code}`);
    if (codes.has(s.code)) throw new Error(`duplicate hub code ${s.code}`);
    codes.add(s.code);
  }
  const byCode = new Map(seeds.map((s) => [s.code, s]));
  const pairs = new Map<string, [HubSeed, HubSeed, ModeName]>();
  const addPair = (a: HubSeed, b: HubSeed, mode: ModeName) => {
    if (a.code === b.code) return;
    const [x, y] = a.code < b.code ? [a, b] : [b, a];
    pairs.set(`${x.code}|${y.code}|${mode}`, [x, y, mode]);
  };
  const km = (a: HubSeed, b: HubSeed) => haversineKm(a, b);

  for (let i = 0; i < seeds.length; i++) {
    for (let j = i + 1; j < seeds.length; j++) {
      const a = seeds[i]!;
      const b = seeds[j]!;
      if (a.continent === b.continent && a.land === b.land && km(a, b) < ROAD_MAX_KM) addPair(a, b, "ROAD");
    }
  }
  for (const [x, y] of railCorridors) {
    const a = byCode.get(x);
    const b = byCode.get(y);
    if (!a || !b) throw new Error(`rail corridor ${x}-${y} names an unknown hub`);
    addPair(a, b, "RAIL");
  }
  const spokes = (kind: HubKindName, mode: ModeName, nearest: number, minKm: number) => {
    const group = seeds.filter((s) => s.kind === kind);
    for (const a of group) {
      const near = group
        .filter((b) => b !== a && km(a, b) >= minKm)
        .sort((p, q) => km(a, p) - km(a, q) || p.code.localeCompare(q.code))
        .slice(0, nearest);
      for (const b of near) addPair(a, b, mode);
      // Gateways interconnect worldwide; other hubs feed the gateways of their own continent
      // plus the two nearest gateways anywhere.
      const gateways = group.filter((b) => b.gateway && b !== a);
      for (const b of gateways) if (a.gateway || b.continent === a.continent) addPair(a, b, mode);
      const nearestGateways = gateways.sort((p, q) => km(a, p) - km(a, q) || p.code.localeCompare(q.code)).slice(0, 2);
      for (const b of nearestGateways) addPair(a, b, mode);
    }
  };
  spokes("AIRPORT", "AIR", AIR_NEAREST, AIR_MIN_KM);
  spokes("SEAPORT", "SEA", SEA_NEAREST, 0);

  const lanes: LaneRecord[] = [];
  const sorted = [...pairs.values()].sort(([a1, b1, m1], [a2, b2, m2]) =>
    `${a1.code}|${b1.code}|${m1}`.localeCompare(`${a2.code}|${b2.code}|${m2}`),
  );
  for (const [x, y, mode] of sorted) {
    const d = km(x, y);
    for (const [a, b] of [
      [x, y],
      [y, x],
    ] as const) {
      const [mask, times] = schedule(mode, a, b, d);
      lanes.push([a.code, b.code, mode, Math.round(d), transitMin(mode, d), cutoffMin[mode], mask, times]);
    }
  }
  const hubs: HubRecord[] = seeds.map((s) => ({
    code: s.code,
    name: s.name,
    city: s.city,
    country: s.country,
    lat: s.lat,
    lon: s.lon,
    kind: s.kind,
    timeZone: s.timeZone,
    continent: s.continent,
    processingMin: processingMin(s),
  }));
  return { hubs, lanes };
}

function render(data: HubNetworkData): string {
  const lines = [
    "// Generated by services/routing/src/scripts/generate-network.ts from hub-seeds.ts. Do not edit.",
    'import type { HubNetworkData } from "../hub-network.js";',
    "",
    `/** The hub network: ${data.hubs.length} hubs and ${data.lanes.length} lanes with their weekly schedules. */`,
    "export const hubNetworkData: HubNetworkData = {",
    "  hubs: [",
    ...data.hubs.map((h) => `    ${JSON.stringify(h)},`),
    "  ],",
    "  lanes: [",
    ...data.lanes.map((l) => `    ${JSON.stringify(l)},`),
    "  ],",
    "};",
    "",
  ];
  return lines.join("\n");
}

const out = process.argv[2] ?? "services/routing/src/data/hub-network-data.ts";
const data = generate();
writeFileSync(out, render(data));
const modes = new Map<string, number>();
for (const l of data.lanes) modes.set(l[2], (modes.get(l[2]) ?? 0) + 1);
process.stdout.write(`wrote ${out}: ${data.hubs.length} hubs, ${data.lanes.length} lanes ${JSON.stringify(Object.fromEntries(modes))}\n`);
