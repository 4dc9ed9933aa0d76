/**
 * What request validation costs per message: CPU per 100,000 validations of the hot requests of
 * ingest and tracking, by the mesh's protovalidate validator alone (what the request validation
 * interceptor ran before) and by the prechecked validator the interceptor runs now
 * (`createPrecheckedValidator`: compiled checks first, protovalidate only for what they cannot
 * vouch for), in the same process, one after the other in rounds whose order alternates.
 *
 *   node perf/dist/ingest/request-validation-bench.js [--n 100000] [--rounds 3]
 *
 * The requests are decoded from their binary encoding, as a server sees them: CreateShipment
 * requests of the end-to-end scenario's lanes (places, parcel, service level, ready time, one
 * partner carrier), a StreamScans message of 100 scans with a traceparent, and the tracking and
 * handover requests. Every request is valid (checked first), so both sides do their whole work.
 * The figure to watch is `ratio`: the validator's CPU over the prechecked validator's, per request
 * (median of the rounds). Runs alone (no servers). Prints one JSON line, then one line per request.
 */
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Validator } from "@bufbuild/protovalidate";
import { ServiceLevel } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import {
  CreateShipmentRequestSchema,
  HandOverShipmentRequestSchema,
  StreamScansRequestSchema,
} from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import {
  GetShipmentRequestSchema,
  ListShipmentEventsRequestSchema,
  WatchShipmentRequestSchema,
} from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { createMeshValidator, createPrecheckedValidator } from "@logistics/shared/validation";
import { LANES } from "../e2e/scenario.js";
import { median } from "../lib/stats.js";

const { values: args } = parseArgs({
  options: {
    n: { type: "string", default: "100000" },
    rounds: { type: "string", default: "3" },
  },
});
const N = Number(args.n);
const ROUNDS = Number(args.rounds);

interface Workload {
  readonly name: string;
  readonly schema: DescMessage;
  /** Distinct requests, decoded from binary; validated in turn. */
  readonly messages: readonly MessageShape<DescMessage>[];
}

function decoded<Desc extends DescMessage>(schema: Desc, inits: ReadonlyArray<MessageInitShape<Desc>>): Workload {
  return { name: schema.name, schema, messages: inits.map((init) => fromBinary(schema, toBinary(schema, create(schema, init)))) };
}

const LEVELS: Record<string, ServiceLevel> = { ECONOMY: ServiceLevel.ECONOMY, STANDARD: ServiceLevel.STANDARD, EXPRESS: ServiceLevel.EXPRESS };
const tn = (k: number) => `PERF${String(k).padStart(8, "0")}`;
const scan = (k: number) => ({
  eventId: `scan-${k}`,
  trackingNumber: tn(k % 64),
  carrierCode: "acme",
  rawStatus: { code: "AR", text: "Arrived at hub" },
  eventTime: timestampFromMs(1_800_000_000_000 + k * 1000),
  hubCode: "FRA",
});

const WORKLOADS: Workload[] = [
  decoded(
    CreateShipmentRequestSchema,
    Array.from({ length: 256 }, (_, k) => {
      const lane = LANES[k % LANES.length]!;
      return {
        idempotencyKey: `perf-run-${k}`,
        trackingNumber: tn(k),
        carrierCode: "acme",
        customerId: "perf-shop",
        customerReference: `order ${k}`,
        serviceLevel: LEVELS[lane.level] ?? ServiceLevel.STANDARD,
        origin: { ...lane.origin, postalCode: "60311" },
        destination: { ...lane.destination, hubCode: k % 2 ? "ORD" : "" },
        parcel: { weightGrams: 500 + (k % 20) * 250, lengthMm: 300, widthMm: 200, heightMm: 150 },
        readyTime: timestampFromMs(1_800_000_000_000 + k * 60_000),
        partnerCarrierCodes: k % 4 ? [] : ["last-mile"],
      };
    }),
  ),
  decoded(StreamScansRequestSchema, [{ scans: Array.from({ length: 100 }, (_, k) => scan(k)), traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" }]),
  decoded(HandOverShipmentRequestSchema, Array.from({ length: 64 }, (_, k) => ({ trackingNumber: tn(k), partnerCarrierCode: "last-mile", hubCode: k % 2 ? "ORD" : "" }))),
  decoded(GetShipmentRequestSchema, Array.from({ length: 64 }, (_, k) => ({ trackingNumber: tn(k) }))),
  decoded(ListShipmentEventsRequestSchema, Array.from({ length: 64 }, (_, k) => ({ trackingNumber: tn(k), pageSize: 50, pageToken: k % 2 ? "" : `cursor-${k}` }))),
  decoded(WatchShipmentRequestSchema, Array.from({ length: 64 }, (_, k) => ({ trackingNumber: tn(k), afterSequence: BigInt(k) }))),
];

/** CPU ms (user + system) of `n` validations of `w`'s requests in turn. */
function cpuMs(validator: Validator, w: Workload, n: number): number {
  const { schema, messages } = w;
  let invalid = 0;
  const start = process.cpuUsage();
  for (let i = 0; i < n; i++) if (validator.validate(schema, messages[i % messages.length]!).kind !== "valid") invalid++;
  const used = process.cpuUsage(start);
  if (invalid > 0) throw new Error(`${w.name}: ${invalid} invalid`);
  return (used.user + used.system) / 1000;
}

const plain = createMeshValidator();
const prechecked = createPrecheckedValidator(createMeshValidator());
const results = WORKLOADS.map((w) => {
  // Warm both (JIT, protovalidate's plan cache, the precheck's compilation) before measuring.
  cpuMs(plain, w, Math.min(N, 5_000));
  cpuMs(prechecked, w, Math.min(N, 5_000));
  const rounds: Array<{ validatorMs: number; precheckedMs: number }> = [];
  for (let r = 0; r < ROUNDS; r++) {
    if (r % 2 === 0) {
      const validatorMs = cpuMs(plain, w, N);
      rounds.push({ validatorMs, precheckedMs: cpuMs(prechecked, w, N) });
    } else {
      const precheckedMs = cpuMs(prechecked, w, N);
      rounds.push({ validatorMs: cpuMs(plain, w, N), precheckedMs });
    }
  }
  const per100k = (ms: number) => (ms * 100_000) / N;
  return {
    request: w.name,
    validatorMsPer100k: Math.round(per100k(median(rounds.map((r) => r.validatorMs)))),
    precheckedMsPer100k: Math.round(per100k(median(rounds.map((r) => r.precheckedMs)))),
    ratio: Number(median(rounds.map((r) => r.validatorMs / r.precheckedMs)).toFixed(1)),
    rounds,
  };
});

console.log(JSON.stringify({ n: N, rounds: ROUNDS, loadavg: loadavg(), results }));
for (const r of results) {
  console.log(`${r.request}: protovalidate ${r.validatorMsPer100k} ms CPU per 100k, prechecked ${r.precheckedMsPer100k} ms (${r.ratio}x less)`);
}
