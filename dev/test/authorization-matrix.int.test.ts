import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import type { DescService } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ALL_SCOPES, Scope } from "@logistics/shared/auth";
import { ServiceLevel } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { IngestService, RejectReason, ScanOutcome, type ScanAck } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import {
  DeliveryState,
  NotificationEventType,
  NotificationService,
} from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { EventDeadLetterService } from "@logistics/shared/gen/logistics/operations/v1/dead_letters_pb.js";
import { DisruptionCause, RoutingService } from "@logistics/shared/gen/logistics/routing/v1/routing_pb.js";
import { TrackingService, type Shipment } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { startReceiver, uniqueName, waitFor, type TestReceiver } from "@logistics/shared/testing";
import { startE2eMesh, type E2eMesh } from "./e2e-mesh.js";

/**
 * The authorization matrix, against the real services: every RPC of every service (enumerated
 * from the generated descriptors, so a new RPC without a case here fails the suite) × every role
 * × a resource the caller owns and one it does not. Real gRPC over HTTP/2, real NATS, Redis and
 * PostgreSQL, real signed tokens.
 *
 * Roles: anonymous (no token); a carrier token of "acme"; a customer token of "alice"; an internal
 * service; an operator (`admin`). Confined tokens hold every scope but `admin`, so what they can
 * do is decided by confinement and ownership alone, never by a missing scope.
 *
 * Resources: "own" is acme's shipment of customer alice (and the subscriptions of alice / acme);
 * "other" is globex's shipment of customer bob (and the subscriptions of bob / globex).
 *
 * Outcomes: a Connect code name when the call fails; otherwise what the caller got — "full" or
 * "public" for a shipment view, a scan's outcome, "visible"/"hidden" for another's object in a
 * listing, "redriven"/"none" for dead letters, "ok" for anything else.
 */

type Role = "anonymous" | "carrier" | "customer" | "internal" | "operator";
type Side = "own" | "other";
const ROLES: readonly Role[] = ["anonymous", "carrier", "customer", "internal", "operator"];
const SERVICES: readonly DescService[] = [IngestService, TrackingService, RoutingService, NotificationService, EventDeadLetterService];

/** Expected outcome per role, as [own, other]. */
type Row = Readonly<Record<Role, readonly [string, string]>>;

const UNAUTH = ["Unauthenticated", "Unauthenticated"] as const;
const DENIED = ["PermissionDenied", "PermissionDenied"] as const;
const both = (x: string) => [x, x] as const;
const PUBLIC_READ: Row = {
  anonymous: both("public"),
  carrier: both("public"),
  customer: ["full", "public"],
  internal: both("full"),
  operator: both("full"),
};
const INTERNAL_ONLY = (outcome: string): Row => ({
  anonymous: UNAUTH,
  carrier: DENIED,
  customer: DENIED,
  internal: both(outcome),
  operator: both(outcome),
});
const OPERATOR_ONLY = (outcome: string): Row => ({
  anonymous: UNAUTH,
  carrier: DENIED,
  customer: DENIED,
  internal: DENIED,
  operator: both(outcome),
});
const OWNED_LISTING: Row = {
  anonymous: UNAUTH,
  carrier: ["visible", "hidden"],
  customer: ["visible", "hidden"],
  internal: both("visible"),
  operator: both("visible"),
};

/** The matrix: `<service type name>/<method>` → expected outcomes. */
const EXPECTED: Readonly<Record<string, Row>> = {
  "logistics.ingest.v1.IngestService/StreamScans": {
    anonymous: UNAUTH,
    carrier: ["ACCEPTED", "REJECTED:WRONG_CARRIER"],
    customer: DENIED,
    internal: both("ACCEPTED"),
    operator: both("ACCEPTED"),
  },
  "logistics.ingest.v1.IngestService/SubmitScans": {
    anonymous: UNAUTH,
    carrier: ["ACCEPTED", "REJECTED:WRONG_CARRIER"],
    customer: DENIED,
    internal: both("ACCEPTED"),
    operator: both("ACCEPTED"),
  },
  "logistics.ingest.v1.IngestService/CreateShipment": INTERNAL_ONLY("ok"),
  "logistics.ingest.v1.IngestService/HandOverShipment": {
    anonymous: UNAUTH,
    carrier: ["ok", "PermissionDenied"],
    customer: DENIED,
    internal: both("ok"),
    operator: both("ok"),
  },
  // The same callers as a handover (it runs after HandOverShipment's cases, so on the own side
  // the carrier removes the partner they added, and the others find it gone: unchanged, "ok").
  "logistics.ingest.v1.IngestService/RemoveShipmentPartner": {
    anonymous: UNAUTH,
    carrier: ["ok", "PermissionDenied"],
    customer: DENIED,
    internal: both("ok"),
    operator: both("ok"),
  },
  "logistics.tracking.v1.TrackingService/GetShipment": PUBLIC_READ,
  "logistics.tracking.v1.TrackingService/ListShipmentEvents": PUBLIC_READ,
  "logistics.tracking.v1.TrackingService/WatchShipment": PUBLIC_READ,
  "logistics.tracking.v1.TrackingService/SearchShipments": {
    anonymous: UNAUTH,
    carrier: DENIED,
    customer: ["full", "PermissionDenied"],
    internal: both("full"),
    operator: both("full"),
  },
  "logistics.routing.v1.RoutingService/PlanRoute": INTERNAL_ONLY("ok"),
  "logistics.routing.v1.RoutingService/GetRoute": INTERNAL_ONLY("ok"),
  "logistics.routing.v1.RoutingService/NearestHubs": INTERNAL_ONLY("ok"),
  // An unknown hub / disruption id: the call passed authorization and failed on the data (no
  // real disruption, so the fixtures' routes are not re-planned).
  "logistics.routing.v1.RoutingService/ReportDisruption": INTERNAL_ONLY("InvalidArgument"),
  "logistics.routing.v1.RoutingService/ClearDisruption": INTERNAL_ONLY("NotFound"),
  "logistics.notification.v1.NotificationService/Subscribe": {
    anonymous: UNAUTH,
    carrier: ["ok", "PermissionDenied"],
    customer: ["ok", "PermissionDenied"],
    internal: both("ok"),
    operator: both("ok"),
  },
  "logistics.notification.v1.NotificationService/Unsubscribe": {
    anonymous: UNAUTH,
    carrier: ["ok", "NotFound"],
    customer: ["ok", "NotFound"],
    internal: both("ok"),
    operator: both("ok"),
  },
  "logistics.notification.v1.NotificationService/ListSubscriptions": OWNED_LISTING,
  "logistics.notification.v1.NotificationService/ListDeliveries": OWNED_LISTING,
  "logistics.notification.v1.NotificationService/RedriveDeadLetters": {
    anonymous: UNAUTH,
    carrier: ["redriven", "none"],
    customer: ["redriven", "none"],
    internal: both("redriven"),
    operator: both("redriven"),
  },
  // The mesh's JetStream dead letters hold every tenant's events: operators only.
  "logistics.operations.v1.EventDeadLetterService/ListEventDeadLetters": OPERATOR_ONLY("allowed"),
  "logistics.operations.v1.EventDeadLetterService/RedriveEventDeadLetters": OPERATOR_ONLY("allowed"),
  "logistics.operations.v1.EventDeadLetterService/PurgeEventDeadLetters": OPERATOR_ONLY("allowed"),
};

/** What a case needs: clients as the role, and the resource. */
interface Ctx {
  readonly role: Role;
  readonly res: Resource;
  readonly ingest: Client<typeof IngestService>;
  readonly tracking: Client<typeof TrackingService>;
  readonly routing: Client<typeof RoutingService>;
  readonly notification: Client<typeof NotificationService>;
  readonly deadLetters: Client<typeof EventDeadLetterService>;
}

/** One side's objects. */
interface Resource {
  readonly trackingNumber: string;
  readonly carrier: string;
  readonly customer: string;
  /** Subscriptions owned by the side's customer and carrier (dead-lettering receiver). */
  readonly subscriptions: { readonly customer: string; readonly carrier: string };
  /** Spare subscriptions for Unsubscribe. */
  readonly spare: { readonly customer: string; readonly carrier: string };
}

const codeName = (e: unknown) => Code[ConnectError.from(e).code] as string;
const view = (s: Shipment | undefined) => (s === undefined ? "missing" : s.customerId !== "" ? "full" : "public");
const ackOutcome = (a: ScanAck | undefined) =>
  a === undefined ? "no ack" : a.outcome === ScanOutcome.REJECTED ? `REJECTED:${RejectReason[a.rejectReason]}` : ScanOutcome[a.outcome];
/** The subscription of the resource that belongs to the caller's kind (a carrier's, else a customer's). */
const subOf = (c: Ctx, pick: "subscriptions" | "spare") => (c.role === "carrier" ? c.res[pick].carrier : c.res[pick].customer);

function scanOf(c: Ctx) {
  return {
    eventId: uniqueName("mx"),
    trackingNumber: c.res.trackingNumber,
    carrierCode: c.res.carrier,
    rawStatus: { code: "AR", text: "Arrived at hub" },
    eventTime: timestampFromDate(new Date(Date.now() - 60_000)),
    hubCode: "FRA",
  };
}

function shipmentRequest(carrier: string, customer: string, trackingNumber = "") {
  return {
    idempotencyKey: uniqueName("mx-order"),
    trackingNumber,
    carrierCode: carrier,
    customerId: customer,
    serviceLevel: ServiceLevel.STANDARD,
    origin: { countryCode: "DE", city: "Frankfurt", location: { latitude: 50.11, longitude: 8.68 } },
    destination: { countryCode: "US", city: "Chicago", location: { latitude: 41.88, longitude: -87.63 } },
    parcel: { weightGrams: 1200 },
  };
}

describe("authorization matrix: every RPC × every role × own/other resource, against the real services", () => {
  let mesh: E2eMesh;
  let deadEnd: TestReceiver;
  let okHook: TestReceiver;
  const clients = new Map<Role, Omit<Ctx, "role" | "res">>();
  const sides = new Map<Side, Resource>();
  let internal: Omit<Ctx, "role" | "res">;
  /** Waits until every fixture delivery is dead-lettered again (after a redrive). */
  let settleDeadLetters: () => Promise<void>;

  const CASES: Readonly<Record<string, (c: Ctx) => Promise<string>>> = {
    "logistics.ingest.v1.IngestService/StreamScans": async (c) => {
      async function* one() {
        yield { scans: [scanOf(c)] };
      }
      for await (const res of c.ingest.streamScans(one())) return ackOutcome(res.acks[0]);
      return "no response";
    },
    "logistics.ingest.v1.IngestService/SubmitScans": async (c) => ackOutcome((await c.ingest.submitScans({ scans: [scanOf(c)] })).acks[0]),
    "logistics.ingest.v1.IngestService/CreateShipment": async (c) => {
      await c.ingest.createShipment(shipmentRequest(c.res.carrier, c.res.customer));
      return "ok";
    },
    "logistics.ingest.v1.IngestService/HandOverShipment": async (c) => {
      await c.ingest.handOverShipment({ trackingNumber: c.res.trackingNumber, partnerCarrierCode: "lastmile" });
      return "ok";
    },
    "logistics.ingest.v1.IngestService/RemoveShipmentPartner": async (c) => {
      await c.ingest.removeShipmentPartner({ trackingNumber: c.res.trackingNumber, partnerCarrierCode: "lastmile" });
      return "ok";
    },
    "logistics.tracking.v1.TrackingService/GetShipment": async (c) =>
      view((await c.tracking.getShipment({ trackingNumber: c.res.trackingNumber })).shipment),
    "logistics.tracking.v1.TrackingService/ListShipmentEvents": async (c) => {
      const [first] = (await c.tracking.listShipmentEvents({ trackingNumber: c.res.trackingNumber })).events;
      return first === undefined ? "empty" : first.eventId !== "" ? "full" : "public";
    },
    "logistics.tracking.v1.TrackingService/WatchShipment": async (c) => {
      const abort = new AbortController();
      try {
        for await (const u of c.tracking.watchShipment({ trackingNumber: c.res.trackingNumber }, { signal: abort.signal })) return view(u.shipment);
        return "ended";
      } finally {
        abort.abort();
      }
    },
    "logistics.tracking.v1.TrackingService/SearchShipments": async (c) => {
      const { shipments } = await c.tracking.searchShipments({ customerId: c.res.customer });
      return shipments.length === 0 ? "empty" : view(shipments[0]);
    },
    "logistics.routing.v1.RoutingService/PlanRoute": async (c) => {
      const r = shipmentRequest(c.res.carrier, c.res.customer);
      await c.routing.planRoute({ origin: r.origin, destination: r.destination, serviceLevel: r.serviceLevel });
      return "ok";
    },
    "logistics.routing.v1.RoutingService/GetRoute": async (c) => {
      await c.routing.getRoute({ trackingNumber: c.res.trackingNumber });
      return "ok";
    },
    "logistics.routing.v1.RoutingService/NearestHubs": async (c) => {
      await c.routing.nearestHubs({ point: { latitude: 50.11, longitude: 8.68 }, limit: 3 });
      return "ok";
    },
    "logistics.routing.v1.RoutingService/ReportDisruption": async (c) => {
      await c.routing.reportDisruption({
        target: { case: "hubCode", value: "ZZZ9" },
        startsAt: timestampFromDate(new Date()),
        cause: DisruptionCause.STORM,
      });
      return "ok";
    },
    "logistics.routing.v1.RoutingService/ClearDisruption": async (c) => {
      await c.routing.clearDisruption({ disruptionId: "dsr_none" });
      return "ok";
    },
    "logistics.notification.v1.NotificationService/Subscribe": async (c) => {
      const scope =
        c.role === "carrier" ? { case: "carrierCode" as const, value: c.res.carrier } : { case: "customerId" as const, value: c.res.customer };
      await c.notification.subscribe({ scope, eventTypes: [NotificationEventType.ETA_CHANGED], webhookUrl: `${okHook.url}/mx` });
      return "ok";
    },
    "logistics.notification.v1.NotificationService/Unsubscribe": async (c) => {
      await c.notification.unsubscribe({ subscriptionId: subOf(c, "spare") });
      return "ok";
    },
    "logistics.notification.v1.NotificationService/ListSubscriptions": async (c) => {
      const id = subOf(c, "subscriptions");
      const { subscriptions } = await c.notification.listSubscriptions({ pageSize: 500 });
      return subscriptions.some((s) => s.subscriptionId === id) ? "visible" : "hidden";
    },
    "logistics.notification.v1.NotificationService/ListDeliveries": async (c) => {
      const { deliveries } = await c.notification.listDeliveries({ subscriptionId: subOf(c, "subscriptions") });
      return deliveries.length > 0 ? "visible" : "hidden";
    },
    "logistics.notification.v1.NotificationService/RedriveDeadLetters": async (c) => {
      const { redriven } = await c.notification.redriveDeadLetters({ subscriptionId: subOf(c, "subscriptions") });
      if (redriven > 0) await settleDeadLetters();
      return redriven > 0 ? "redriven" : "none";
    },
    "logistics.operations.v1.EventDeadLetterService/ListEventDeadLetters": async (c) => {
      await c.deadLetters.listEventDeadLetters({ filter: { consumer: "tracking-scans" } });
      return "allowed";
    },
    "logistics.operations.v1.EventDeadLetterService/RedriveEventDeadLetters": async (c) => {
      await c.deadLetters.redriveEventDeadLetters({ filter: { consumer: "tracking-scans" }, dryRun: true });
      return "allowed";
    },
    "logistics.operations.v1.EventDeadLetterService/PurgeEventDeadLetters": async (c) => {
      await c.deadLetters.purgeEventDeadLetters({ filter: { consumer: "tracking-scans" }, dryRun: true });
      return "allowed";
    },
  };

  beforeAll(async () => {
    mesh = await startE2eMesh();
    deadEnd = await startReceiver(() => ({ status: 410 }));
    okHook = await startReceiver();
    const nonAdmin = ALL_SCOPES.filter((s) => s !== Scope.Admin);
    const tokens: Record<Role, string | undefined> = {
      anonymous: undefined,
      carrier: await mesh.token(nonAdmin, { carrier: "acme" }),
      customer: await mesh.token(nonAdmin, { customer: "alice" }),
      internal: await mesh.token(nonAdmin),
      operator: await mesh.token([Scope.Admin]),
    };
    for (const role of ROLES) clients.set(role, make(tokens[role]));
    internal = clients.get("internal")!;

    // Subscriptions first (so the shipments' creation events are delivered to them), each created
    // by its owner's own token; the dead-end receiver dead-letters every delivery at once.
    const subscribeAs = async (extra: { customer?: string; carrier?: string }) => {
      const as = make(await mesh.token(nonAdmin, extra));
      const scope = extra.customer
        ? { case: "customerId" as const, value: extra.customer }
        : { case: "carrierCode" as const, value: extra.carrier ?? "" };
      const sub = async (url: string) =>
        (await as.notification.subscribe({ scope, eventTypes: [NotificationEventType.STATUS_CHANGED], webhookUrl: url })).subscription
          ?.subscriptionId ?? "";
      return { main: await sub(`${deadEnd.url}/main`), spare: await sub(`${okHook.url}/spare`) };
    };
    const [alice, bob, acme, globex] = await Promise.all([
      subscribeAs({ customer: "alice" }),
      subscribeAs({ customer: "bob" }),
      subscribeAs({ carrier: "acme" }),
      subscribeAs({ carrier: "globex" }),
    ]);
    const own = await internal.ingest.createShipment(shipmentRequest("acme", "alice"));
    const other = await internal.ingest.createShipment(shipmentRequest("globex", "bob"));
    sides.set("own", {
      trackingNumber: own.trackingNumber,
      carrier: "acme",
      customer: "alice",
      subscriptions: { customer: alice.main, carrier: acme.main },
      spare: { customer: alice.spare, carrier: acme.spare },
    });
    sides.set("other", {
      trackingNumber: other.trackingNumber,
      carrier: "globex",
      customer: "bob",
      subscriptions: { customer: bob.main, carrier: globex.main },
      spare: { customer: bob.spare, carrier: globex.spare },
    });
    const mains = [alice.main, bob.main, acme.main, globex.main];
    const allDead = async () => {
      for (const id of mains) {
        const { deliveries } = await internal.notification.listDeliveries({ subscriptionId: id });
        if (deliveries.length === 0 || deliveries.some((d) => d.state !== DeliveryState.DEAD_LETTERED)) return false;
      }
      return true;
    };
    settleDeadLetters = async () => {
      await waitFor(allDead, { timeoutMs: 30_000, message: "redriven fixture deliveries are dead-lettered again" });
    };
    for (const tn of [own.trackingNumber, other.trackingNumber]) {
      await waitFor(() => internal.tracking.getShipment({ trackingNumber: tn }).then(() => true), { timeoutMs: 30_000, message: `tracking has ${tn}` });
      await waitFor(() => internal.routing.getRoute({ trackingNumber: tn }).then(() => true), { timeoutMs: 30_000, message: `routing planned ${tn}` });
    }
    await settleDeadLetters();
  });

  afterAll(async () => {
    await okHook?.close();
    await deadEnd?.close();
    await mesh?.close();
  });

  it("has a case and an expectation for every RPC the services register", () => {
    const registered = SERVICES.flatMap((s) => s.methods.map((m) => `${s.typeName}/${m.name}`));
    const missing = registered.filter((k) => !(k in CASES) || !(k in EXPECTED));
    assert.deepEqual(missing, [], `RPCs without an authorization case: ${missing.join(", ")}`);
    assert.deepEqual(Object.keys(EXPECTED).filter((k) => !registered.includes(k)), [], "cases for RPCs that no longer exist");
  });

  it("answers every RPC × role × resource as the ownership rules say", async () => {
    const got: Record<string, Record<Role, [string, string]>> = {};
    const mismatches: string[] = [];
    for (const service of SERVICES) {
      for (const method of service.methods) {
        const key = `${service.typeName}/${method.name}`;
        const run = CASES[key];
        const expected = EXPECTED[key];
        if (!run || !expected) continue; // reported by the test above
        const row = {} as Record<Role, [string, string]>;
        for (const role of ROLES) {
          const outcomes: [string, string] = ["", ""];
          for (const [i, side] of (["own", "other"] as const).entries()) {
            const c: Ctx = { role, res: sides.get(side)!, ...clients.get(role)! };
            outcomes[i] = await run(c).catch(codeName);
            if (outcomes[i] !== expected[role][i]) mismatches.push(`${key} as ${role} on ${side}: got ${outcomes[i]}, expected ${expected[role][i]}`);
          }
          row[role] = outcomes;
        }
        got[key] = row;
      }
    }
    const table = Object.entries(got).map(
      ([k, row]) => `| ${k.split(".").pop()} | ${ROLES.map((r) => (row[r][0] === row[r][1] ? row[r][0] : `${row[r][0]} / ${row[r][1]}`)).join(" | ")} |`,
    );
    console.log([`| RPC | ${ROLES.join(" | ")} |`, `|---|${ROLES.map(() => "---").join("|")}|`, ...table].join("\n"));
    assert.deepEqual(mismatches, []);
  });

  describe("the attacks of the ownership report, end to end", () => {
    it("a carrier cannot deliver another carrier's parcel: the forged DELIVERED scan is rejected and never reaches tracking", async () => {
      const victim = sides.get("other")!;
      const acme = clients.get("carrier")!;
      const forged = { ...scanOf({ role: "carrier", res: { ...victim, carrier: "acme" }, ...acme }), rawStatus: { code: "DL", text: "Delivered" } };
      const res = await acme.ingest.submitScans({ scans: [forged] });
      assert.equal(ackOutcome(res.acks[0]), "REJECTED:WRONG_CARRIER");
      // A real scan of the rightful carrier afterwards: once it is visible, anything before it would be too.
      const globex = make(await mesh.token([Scope.ScansWrite], { carrier: "globex" }));
      const real = { ...scanOf({ role: "carrier", res: victim, ...globex }), rawStatus: { code: "OD", text: "Out for delivery" } };
      assert.equal(ackOutcome((await globex.ingest.submitScans({ scans: [real] })).acks[0]), "ACCEPTED");
      const events = await waitFor(async () => {
        const { events } = await internal.tracking.listShipmentEvents({ trackingNumber: victim.trackingNumber, pageSize: 200 });
        return events.some((e) => e.carrierStatus?.code === "OD") ? events : undefined;
      });
      assert.ok(!events.some((e) => e.carrierStatus?.code === "DL"), "no delivered scan in the history");
      const pub = await clients.get("anonymous")!.tracking.getShipment({ trackingNumber: victim.trackingNumber });
      assert.equal(pub.shipment?.deliveredAt, undefined, "the public page does not show the parcel delivered");
    });

    it("a customer cannot list another customer's subscriptions or webhook URLs, subscribe to its events, or unsubscribe them", async () => {
      const mallory = make(await mesh.token(ALL_SCOPES.filter((s) => s !== Scope.Admin), { customer: "bob" }));
      const own = sides.get("own")!;
      const listed = await mallory.notification.listSubscriptions({ pageSize: 500 });
      assert.ok(!listed.subscriptions.some((s) => s.webhookUrl.includes("/main") && s.scope.value === "alice"), "no alice webhook URL");
      assert.ok(listed.subscriptions.every((s) => !(s.scope.case === "customerId" && s.scope.value === "alice")));
      const code = await mallory.notification
        .subscribe({ scope: { case: "customerId", value: "alice" }, eventTypes: [NotificationEventType.STATUS_CHANGED], webhookUrl: `${okHook.url}/steal` })
        .then(() => "ok", codeName);
      assert.equal(code, "PermissionDenied");
      assert.equal(await mallory.notification.unsubscribe({ subscriptionId: own.subscriptions.customer }).then(() => "ok", codeName), "NotFound");
      assert.deepEqual((await mallory.notification.listDeliveries({ subscriptionId: own.subscriptions.customer })).deliveries, []);
    });

    it("refuses a token combining admin with a carrier claim on every service", async () => {
      const forged = make(await mesh.token([Scope.Admin, Scope.ScansWrite], { carrier: "acme" }));
      const own = sides.get("own")!;
      const calls: Array<Promise<unknown>> = [
        forged.ingest.submitScans({ scans: [scanOf({ role: "carrier", res: sides.get("other")!, ...forged })] }),
        forged.tracking.searchShipments({ customerId: own.customer }),
        forged.tracking.getShipment({ trackingNumber: own.trackingNumber }),
        forged.routing.nearestHubs({ point: { latitude: 50.11, longitude: 8.68 } }),
        forged.notification.listSubscriptions({}),
      ];
      const outcomes = await Promise.all(calls.map((call) => call.then(() => "ok", codeName)));
      assert.deepEqual(outcomes, outcomes.map(() => "Unauthenticated"));
    });
  });

  /** Clients of every service presenting `token` (none: anonymous). */
  function make(token: string | undefined): Omit<Ctx, "role" | "res"> {
    const transport = (svc: Parameters<E2eMesh["get"]>[0]) =>
      createGrpcTransport({
        baseUrl: mesh.get(svc).url,
        interceptors: [
          (next) => (req) => {
            if (token !== undefined) req.header.set("authorization", `Bearer ${token}`);
            return next(req);
          },
        ],
      });
    return {
      ingest: createClient(IngestService, transport("ingest")),
      tracking: createClient(TrackingService, transport("tracking")),
      routing: createClient(RoutingService, transport("routing")),
      notification: createClient(NotificationService, transport("notification")),
      deadLetters: createClient(EventDeadLetterService, transport("notification")),
    };
  }
});
