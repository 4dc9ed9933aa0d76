/**
 * Everything the page says, as one typed catalog per language (`locales/<tag>.ts`). A language is
 * added by adding one file there that default-exports a {@link Catalog}: the page finds it at build
 * time (see i18n.ts) and the type checker makes sure no message is missing. Dates, times, numbers,
 * durations, relative times and country names are formatted by `Intl`, never by the catalogs.
 */

/** The steps of the progress indicator, in order. */
export type StepId = "created" | "pickedUp" | "inTransit" | "outForDelivery" | "delivered";

/** Something that interrupts the normal progress, shown on the step where it happened. */
export type ExceptionId =
  | "delayed"
  | "customsHold"
  | "attempted"
  | "readyForPickup"
  | "returned"
  | "problem"
  | "expired";

/** Why the estimate last changed, as the page explains it. */
export type EtaReasonId = "early" | "late" | "rerouted" | "disruption" | "disruptionCleared";

/** How a leg travels. */
export type ModeId = "air" | "sea" | "road" | "rail" | "other";

/** Service levels, as booked. */
export type ServiceId = "economy" | "standard" | "express" | "overnight";

/** Plain-words history entries; `place` is already localized ("Tokyo, Japan"). */
export interface EventMessages {
  readonly created: string;
  readonly info: string;
  readonly pickedUp: string;
  arrivedAt(place: string): string;
  leftFrom(place: string): string;
  customs(place: string): string;
  customsHold(place: string): string;
  readonly outForDelivery: string;
  readonly attempted: string;
  readonly delivered: string;
  readyForPickup(place: string): string;
  readonly problem: string;
  readonly returning: string;
  readonly returned: string;
  readonly corrected: string;
  /**
   * The parcel went to another carrier (e.g. a last-mile one): `partner` is that carrier's code
   * when the reader may see it, else empty; `place` is empty when it did not happen at a hub.
   */
  handedOver(partner: string, place: string): string;
  readonly carrierUpdate: string;
}

/** All texts of the page in one language. */
export interface Messages {
  readonly pageTitle: string;
  documentTitle(trackingNumber: string): string;
  readonly languageLabel: string;
  readonly trackingNumberLabel: string;
  trackingNumberPlaceholder(example: string): string;
  readonly trackButton: string;
  /** Shown under the field for input that is not a tracking number. */
  invalidTrackingNumber(input: string, example: string): string;
  lookingUp(trackingNumber: string): string;
  notFound(trackingNumber: string): string;
  /** `seconds` is undefined while a reconnection is under way. */
  reconnecting(seconds: number | undefined): string;
  readonly loadFailed: string;
  pageFailed(detail: string): string;
  readonly live: string;
  readonly offline: string;
  /** `zone` is the viewer's time zone, e.g. "Central European Standard Time". */
  timesInZone(zone: string): string;

  readonly progressLabel: string;
  readonly steps: Readonly<Record<StepId, string>>;
  /** Screen-reader words for a step's state. */
  readonly stepDone: string;
  readonly stepCurrent: string;
  readonly stepUpcoming: string;
  readonly exceptions: Readonly<Record<ExceptionId, string>>;
  readonly exceptionHelp: Readonly<Record<ExceptionId, string>>;

  readonly etaHeading: string;
  /** e.g. "Delivered on Thursday 4 December at 14:05". */
  deliveredOn(date: string, time: string): string;
  /** Headline of the estimate, e.g. "Thursday 4 December". */
  arriving(date: string): string;
  /** e.g. "around 14:00 (in 2 days)". */
  etaAround(time: string, relative: string): string;
  etaWindow(from: string, to: string): string;
  readonly etaNotYet: string;
  readonly etaPassed: string;
  readonly etaReasons: Readonly<Record<EtaReasonId, string>>;
  etaUpdated(relative: string): string;

  readonly from: string;
  readonly to: string;
  readonly service: string;
  readonly services: Readonly<Record<ServiceId, string>>;
  /** A live announcement for screen readers when the status changes. */
  announceStatus(status: string, latest: string): string;
  /** A live announcement when the estimate changes. */
  announceEta(date: string): string;

  readonly journeyHeading: string;
  /** Accessible name of the map. */
  mapSummary(from: string, to: string, at: string | undefined): string;
  readonly modes: Readonly<Record<ModeId, string>>;
  readonly legDone: string;
  readonly legCurrent: string;
  readonly legUpcoming: string;
  /** An actual departure, from a scan. */
  departed(time: string): string;
  /** A scheduled departure (worded so it reads right before and after the time). */
  departs(time: string): string;
  /** An actual arrival, from a scan. */
  arrived(time: string): string;
  /** A scheduled arrival. */
  arrives(time: string): string;
  /** `by` is a duration, e.g. "3 hours". */
  early(by: string): string;
  late(by: string): string;
  readonly noRoute: string;
  readonly scannedPathOnly: string;
  readonly youAreHere: string;

  readonly historyHeading: string;
  readonly events: EventMessages;
  carrierNote(text: string): string;
  readonly noEvents: string;
}

/** One language: its tag, its own name for the switch, and its texts. */
export interface Catalog {
  /** BCP 47 language tag, e.g. "en" or "ko"; also the file name under locales/. */
  readonly locale: string;
  /** The language's name in itself, e.g. "한국어". */
  readonly name: string;
  readonly messages: Messages;
}
