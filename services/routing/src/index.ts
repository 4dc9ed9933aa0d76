/** The routing service's public entry: its definition and config for the runtime, and the hub
 * network and planner as a library (the local runner's simulator and the planner benchmark use them). */
export { routingConfig, type RoutingConfig } from "./config.js";
export { hubNetworkData } from "./data/hub-network-data.js";
export { createHubNetwork } from "./hub-network.js";
export { createPlanner, MODES_BY_SERVICE_LEVEL, NoRouteError, type ServiceLevelName } from "./planner.js";
export { routingService } from "./routing.js";
export { createSpatialIndex } from "./spatial-index.js";
