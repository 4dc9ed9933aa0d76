import { defineConfig, int, optional, str, url, type ConfigOf } from "@logistics/shared/config";
import { baseConfigSpec, checkBaseConfig, checkPostgresConfig, postgresConfigSpec } from "@logistics/shared/runtime";

/** Environment variables of the routing service (see the README's configuration table). */
export const routingConfig = defineConfig(
  {
    ...baseConfigSpec({ port: 8082, metricsPort: 9102 }),
    DATABASE_URL: url({
      description: "PostgreSQL holding routes, ETA history and disruptions",
      protocols: ["postgres:", "postgresql:"],
      default: "postgres://postgres@127.0.0.1:5432/test",
      secret: true,
    }),
    ...postgresConfigSpec(),
    DATABASE_SCHEMA: optional(
      str({
        description: "schema of the routing tables (created if missing); unset: the connection's search_path",
        pattern: /^[a-z_][a-z0-9_]{0,62}$/,
      }),
    ),
    PLANNING_HORIZON_DAYS: int({
      description: "a route must arrive within this many days of the ready time",
      min: 1,
      max: 365,
      default: 60,
    }),
    LATE_TOLERANCE_MIN: int({
      description: "minutes a hub arrival or departure may be late before the route is re-planned",
      min: 0,
      max: 1440,
      default: 30,
    }),
    ROUTE_CACHE_SIZE: int({
      description: "shipments a replica keeps in memory between their events (checked against the stored revision); 0: none",
      min: 0,
      max: 10_000_000,
      default: 10_000,
    }),
    ROUTING_CONSUMER_LINGER_MS: int({
      description:
        "how long a batch of routing's event consumers may wait for more events (fewer, larger batches: one statement and one commit per batch); 0: a batch closes as soon as nothing more is waiting",
      min: 0,
      max: 1000,
      // Routing is not on the path of a scan's visibility: 50 ms costs a route update that much
      // and takes routing's CPU per scan down by a sixth when it has cores to spare, which it
      // would otherwise spend on batches of a few events (perf/README.md, "Batch size").
      default: 50,
    }),
    DISRUPTION_CACHE_MS: int({
      description:
        "how long a replica serves the active disruptions from memory while it listens for their changes (the bound on their staleness should a change notification be lost); 0: read them for every batch",
      min: 0,
      max: 600_000,
      default: 5_000,
    }),
  },
  (c) => [...checkBaseConfig(c), ...checkPostgresConfig(c)],
);

export type RoutingConfig = ConfigOf<typeof routingConfig.spec>;
