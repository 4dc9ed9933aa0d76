import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { drainOf } from "./drain.js";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthCheckResponseSchema,
  type HealthCheckRequest,
  type HealthCheckResponse,
} from "../gen/grpc/health/v1/health_pb.js";

export { ServingStatus };

/**
 * Serving status per service name, served over the standard `grpc.health.v1.Health` protocol
 * (Check and Watch). The empty name is the whole server. Kubernetes gRPC probes call Check.
 */
export interface HealthRegistry {
  /** Sets one service's status (and notifies watchers). */
  set(service: string, status: ServingStatus): void;
  /** Sets every known service, including the server as a whole. */
  setAll(status: ServingStatus): void;
  /** Current status; undefined for an unknown service. */
  get(service: string): ServingStatus | undefined;
  /** Registers the Health service on a router. */
  register(router: ConnectRouter): void;
}

/**
 * Creates a registry in which `services` (and "") start as NOT_SERVING until set otherwise.
 * Watch streams end normally once `drainSignal` fires (after sending the final status).
 */
export function createHealthRegistry(services: readonly string[], drainSignal?: AbortSignal): HealthRegistry {
  const statuses = new Map<string, ServingStatus>([["", ServingStatus.NOT_SERVING]]);
  for (const s of services) statuses.set(s, ServingStatus.NOT_SERVING);
  const watchers = new Set<() => void>();
  const notify = () => {
    for (const w of watchers) w();
  };

  async function* watch(req: HealthCheckRequest, ctx: HandlerContext): AsyncGenerator<HealthCheckResponse> {
    let last: ServingStatus | undefined;
    let wake: (() => void) | undefined;
    const changed = () => wake?.();
    watchers.add(changed);
    ctx.signal.addEventListener("abort", changed);
    const leaveDrain = drainSignal ? drainOf(drainSignal).onDrain(changed) : () => {};
    try {
      // A status change is always sent before the stream ends, so a watcher sees NOT_SERVING
      // when the server drains.
      for (;;) {
        const current = statuses.get(req.service) ?? ServingStatus.SERVICE_UNKNOWN;
        if (current !== last) {
          last = current;
          yield create(HealthCheckResponseSchema, { status: current });
          continue;
        }
        if (ctx.signal.aborted || drainSignal?.aborted) return;
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      watchers.delete(changed);
      ctx.signal.removeEventListener("abort", changed);
      leaveDrain();
    }
  }

  return {
    set(service, status) {
      if (statuses.get(service) === status) return;
      statuses.set(service, status);
      notify();
    },
    setAll(status) {
      for (const key of statuses.keys()) statuses.set(key, status);
      notify();
    },
    get: (service) => statuses.get(service),
    register(router) {
      router.service(Health, {
        check(req) {
          const status = statuses.get(req.service);
          if (status === undefined) throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
          return { status };
        },
        watch,
      });
    },
  };
}
