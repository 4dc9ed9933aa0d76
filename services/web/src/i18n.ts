import type { Catalog, Messages } from "./messages.js";

/**
 * The languages the page speaks: every `locales/*.ts` file, found by Vite at build time (so adding
 * a language is adding one catalog file), sorted by tag. English is the fallback.
 */
const modules = import.meta.glob<{ default: Catalog }>("./locales/*.ts", { eager: true });
export const CATALOGS: readonly Catalog[] = Object.values(modules)
  .map((m) => m.default)
  .sort((a, b) => a.locale.localeCompare(b.locale));

/** The language used when none of the reader's languages is available. */
export const FALLBACK_LOCALE = "en";

/**
 * The best available language for a reader's preferences (`navigator.languages` order): an exact
 * tag match first, then the same base language ("ko-KR" → "ko"), else {@link FALLBACK_LOCALE}.
 */
export function pickLocale(preferred: readonly string[], available: readonly string[]): string {
  const lower = available.map((a) => a.toLowerCase());
  for (const p of preferred) {
    const tag = p.toLowerCase();
    const exact = lower.indexOf(tag);
    if (exact >= 0) return available[exact]!;
    const base = lower.indexOf(tag.split("-")[0]!);
    if (base >= 0) return available[base]!;
  }
  return available.includes(FALLBACK_LOCALE) ? FALLBACK_LOCALE : (available[0] ?? FALLBACK_LOCALE);
}

/** The catalog for a tag (the fallback's when unknown). */
export function catalogFor(locale: string): Catalog {
  return CATALOGS.find((c) => c.locale === locale) ?? CATALOGS.find((c) => c.locale === FALLBACK_LOCALE) ?? CATALOGS[0]!;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** Texts plus `Intl` formatters for one language, all in the reader's time zone. */
export interface Localizer {
  readonly locale: string;
  readonly m: Messages;
  /** IANA zone every time on the page is shown in (the browser's). */
  readonly timeZone: string;
  /** Weekday, day, month and time, e.g. "Tue, Dec 2, 14:05". */
  dateTime(ms: number): string;
  /** Weekday, day and month, e.g. "Thursday, December 4". */
  date(ms: number): string;
  /** Hours and minutes, e.g. "14:05". */
  time(ms: number): string;
  /** Relative to `now`, e.g. "in 2 days", "3 hours ago". */
  relative(ms: number, now?: number): string;
  /** A length of time in its largest sensible unit, e.g. "3 hours", "2 days". */
  duration(ms: number): string;
  /** The reader's zone in words, e.g. "Korean Standard Time". */
  zoneName(): string;
  /** A country's name from its ISO code, e.g. "JP" → "Japan" / "일본". */
  country(code: string): string;
}

/** Creates the localizer; `timeZone` defaults to the browser's. */
export function createLocalizer(catalog: Catalog, timeZone?: string): Localizer {
  const locale = catalog.locale;
  const zone = timeZone ?? (Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC");
  const dateTimeFmt = new Intl.DateTimeFormat(locale, {
    weekday: "short",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    timeZone: zone,
  });
  const dateFmt = new Intl.DateTimeFormat(locale, { weekday: "long", month: "long", day: "numeric", timeZone: zone });
  const timeFmt = new Intl.DateTimeFormat(locale, { hour: "2-digit", minute: "2-digit", timeZone: zone });
  const rtf = new Intl.RelativeTimeFormat(locale, { numeric: "auto" });
  const units = new Map<string, Intl.NumberFormat>();
  const unit = (u: "minute" | "hour" | "day") => {
    let f = units.get(u);
    if (!f) {
      f = new Intl.NumberFormat(locale, { style: "unit", unit: u, unitDisplay: "long", maximumFractionDigits: 0 });
      units.set(u, f);
    }
    return f;
  };
  let countries: Intl.DisplayNames | undefined;
  return {
    locale,
    m: catalog.messages,
    timeZone: zone,
    dateTime: (ms) => dateTimeFmt.format(ms),
    date: (ms) => dateFmt.format(ms),
    time: (ms) => timeFmt.format(ms),
    relative(ms, now = Date.now()) {
      const diff = ms - now;
      const abs = Math.abs(diff);
      if (abs < MINUTE) return rtf.format(0, "second");
      if (abs < HOUR) return rtf.format(Math.round(diff / MINUTE), "minute");
      if (abs < DAY) return rtf.format(Math.round(diff / HOUR), "hour");
      return rtf.format(Math.round(diff / DAY), "day");
    },
    duration(ms) {
      const abs = Math.abs(ms);
      if (abs < HOUR) return unit("minute").format(Math.max(1, Math.round(abs / MINUTE)));
      if (abs < 2 * DAY) return unit("hour").format(Math.round(abs / HOUR));
      return unit("day").format(Math.round(abs / DAY));
    },
    zoneName() {
      const part = new Intl.DateTimeFormat(locale, { timeZone: zone, timeZoneName: "long" })
        .formatToParts(Date.now())
        .find((p) => p.type === "timeZoneName");
      return part ? `${part.value}, ${zone}` : zone;
    },
    country(code) {
      if (!code) return "";
      try {
        countries ??= new Intl.DisplayNames([locale], { type: "region" });
        return countries.of(code.toUpperCase()) ?? code;
      } catch {
        return code;
      }
    },
  };
}
