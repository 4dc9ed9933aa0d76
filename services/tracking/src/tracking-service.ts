import type { ServiceImpl } from "@connectrpc/connect";
import type { TrackingService } from "../../shared/src/gen/logistics/tracking/v1/tracking_pb.js";

/** The RPC handlers; methods not implemented yet answer Unimplemented. */
export type TrackingServiceHandlers = Partial<ServiceImpl<typeof TrackingService>>;

/** Dependencies of the tracking handlers (narrow interfaces, built by main.ts). */
export interface TrackingServiceDeps {}

/** Creates the TrackingService handlers. */
export function createTrackingService(_deps: TrackingServiceDeps): TrackingServiceHandlers {
  return {};
}
