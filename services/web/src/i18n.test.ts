import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { CATALOGS, catalogFor, createLocalizer, pickLocale } from "./i18n.js";
import type { Messages } from "./messages.js";

/** Every message of a catalog, functions called with sample arguments, by key path. */
function flatten(m: object, prefix = ""): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, v] of Object.entries(m)) {
    const key = `${prefix}${k}`;
    if (typeof v === "string") out.set(key, v);
    else if (typeof v === "function") out.set(key, String((v as (...a: unknown[]) => unknown)("X", "Y", "Z")));
    else if (v && typeof v === "object") for (const [kk, vv] of flatten(v as object, `${key}.`)) out.set(kk, vv);
  }
  return out;
}

describe("language catalogs", () => {
  it("include English and Korean, found from the locales folder", () => {
    assert.deepEqual(
      CATALOGS.map((c) => c.locale),
      ["en", "ko"],
    );
    assert.equal(catalogFor("ko").name, "한국어");
  });

  it("translate every message (same keys as English, none empty, none left in English)", () => {
    const en = flatten(catalogFor("en").messages as Messages);
    for (const c of CATALOGS) {
      const m = flatten(c.messages);
      assert.deepEqual([...m.keys()].sort(), [...en.keys()].sort(), c.locale);
      for (const [k, v] of m) assert.ok(v.trim().length > 0, `${c.locale}: ${k} is empty`);
    }
    const ko = flatten(catalogFor("ko").messages);
    const untranslated = [...ko].filter(([k, v]) => v === en.get(k) && /[a-z]{3}/.test(v));
    assert.deepEqual(untranslated, []);
  });
});

describe("pickLocale", () => {
  it("takes the first of the reader's languages that the page has, by exact tag or base language", () => {
    assert.equal(pickLocale(["ko-KR", "en-US"], ["en", "ko"]), "ko");
    assert.equal(pickLocale(["fr-FR", "en-GB"], ["en", "ko"]), "en");
    assert.equal(pickLocale(["KO"], ["en", "ko"]), "ko");
  });

  it("falls back to English", () => {
    assert.equal(pickLocale(["fr", "de"], ["en", "ko"]), "en");
    assert.equal(pickLocale([], ["en", "ko"]), "en");
  });
});

describe("createLocalizer", () => {
  const at = Date.UTC(2026, 11, 3, 23, 30);

  it("formats dates, times and relative times in the reader's zone and language", () => {
    const en = createLocalizer(catalogFor("en"), "Asia/Seoul");
    const ko = createLocalizer(catalogFor("ko"), "Asia/Seoul");
    // 23:30 UTC on 3 Dec is Friday 4 Dec, 08:30 in Seoul.
    assert.match(en.date(at), /Friday, December 4/);
    assert.match(ko.date(at), /12월 4일 금요일/);
    assert.match(en.time(at), /08:30/);
    assert.equal(en.relative(at + 2 * 86_400_000, at), "in 2 days");
    assert.equal(ko.relative(at + 2 * 86_400_000, at), "모레");
    assert.equal(en.relative(at, at), "now");
  });

  it("names durations, countries and the zone through Intl", () => {
    const en = createLocalizer(catalogFor("en"), "Europe/Berlin");
    const ko = createLocalizer(catalogFor("ko"), "Europe/Berlin");
    assert.equal(en.duration(3 * 3_600_000), "3 hours");
    assert.equal(ko.duration(3 * 86_400_000), "3일");
    assert.equal(en.country("JP"), "Japan");
    assert.equal(ko.country("JP"), "일본");
    assert.match(en.zoneName(), /Europe\/Berlin/);
  });
});
