import { randomUUID } from "node:crypto";
import { Counter } from "prom-client";
import { EtaChangeReason } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { RoutingService } from "@logistics/shared/gen/logistics/routing/v1/routing_pb.js";
import { createCatalogPublisher } from "@logistics/shared/events";
import { createPipelinedPublisher } from "@logistics/shared/nats";
import { startConsumerLagSampler } from "@logistics/shared/operations";
import { pgTimeouts, type ServiceDefinition } from "@logistics/shared/runtime";
import type { RoutingConfig } from "./config.js";
import { hubNetworkData } from "./data/hub-network-data.js";
import { createHubNetwork } from "./hub-network.js";
import { createPgRouteStore } from "./pg-route-store.js";
import { createPlanner } from "./planner.js";
import { routingConsumerRefs, startRouteConsumers } from "./route-consumers.js";
import { createRouteKeeper } from "./route-keeper.js";
import { createRoutingHandlers } from "./routing-handlers.js";
import { routingPolicies, registerRoutingRoutes } from "./routes.js";
import { createSpatialIndex } from "./spatial-index.js";

const DAY_MS = 24 * 60 * 60 * 1000;

/** The routing service as the runtime starts it (from main.ts, the dev runner and tests). */
export const routingService: ServiceDefinition<RoutingConfig> = {
  name: "routing",
  moduleUrl: import.meta.url,
  services: [RoutingService],
  policies: routingPolicies,
  async start(ctx) {
    const { config, log } = ctx;
    const network = createHubNetwork(hubNetworkData);
    const planner = createPlanner(network);
    const spatial = createSpatialIndex(network.hubs);
    const store = await createPgRouteStore({
      connectionString: config.DATABASE_URL,
      timeouts: pgTimeouts(config),
      disruptionCacheMs: config.DISRUPTION_CACHE_MS,
      ...(config.DATABASE_SCHEMA ? { schema: config.DATABASE_SCHEMA } : {}),
    });
    const clock = () => new Date();
    const newId = () => randomUUID().replace(/-/g, "");
    const revisions = new Counter({
      name: "logistics_route_revisions_total",
      help: "Route revisions stored, by reason (INITIAL_PLAN, LATE_ARRIVAL, DISRUPTION...)",
      labelNames: ["reason"] as const,
      registers: [ctx.metrics.registry],
    });
    // Route events go out as pipelined publishes with one reply subscription for every PubAck
    // (as ingest's scans), not one js.publish request each.
    const eventPipeline = createPipelinedPublisher({ nc: ctx.nats });
    const keeper = createRouteKeeper({
      network,
      planner,
      spatial,
      store,
      publisher: createCatalogPublisher({ js: ctx.js, logger: log, pipeline: eventPipeline }),
      events: ctx.catalog.events,
      clock,
      newId,
      horizonMs: config.PLANNING_HORIZON_DAYS * DAY_MS,
      lateToleranceMs: config.LATE_TOLERANCE_MIN * 60_000,
      onRevision: (reason) => revisions.inc({ reason: EtaChangeReason[reason] ?? String(reason) }),
      cacheSize: config.ROUTE_CACHE_SIZE,
    });
    let consumers: Awaited<ReturnType<typeof startRouteConsumers>>;
    try {
      consumers = await startRouteConsumers({
        nc: ctx.nats,
        js: ctx.js,
        jsm: ctx.jsm,
        catalog: ctx.catalog,
        keeper,
        lingerMs: config.ROUTING_CONSUMER_LINGER_MS,
        logger: log,
        registry: ctx.metrics.registry,
      });
    } catch (e) {
      eventPipeline.close();
      await store.close();
      throw e;
    }
    const backlog = startConsumerLagSampler({
      js: ctx.js,
      jsm: ctx.jsm,
      registry: ctx.metrics.registry,
      consumers: routingConsumerRefs(ctx.catalog),
      deadLetterStream: ctx.subjects.streams.deadLetters.name,
      intervalMs: config.BACKLOG_SAMPLE_MS,
      log,
    });
    log.info({ hubs: network.hubs.length, lanes: network.lanes.length }, "hub network loaded");
    const handlers = createRoutingHandlers({ spatial, routeStore: store, keeper, clock, newId });
    return {
      routes: (router) => registerRoutingRoutes(router, handlers),
      async close() {
        await backlog.close();
        await consumers.close();
        eventPipeline.close();
        await store.close();
      },
    };
  },
};
