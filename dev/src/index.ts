/** The local runner's public entry: the isolated mesh environment used by end-to-end tests and perf runs. */
export { createMeshEnvironment, type MeshEnvironment, type MeshEnvironmentOptions } from "./mesh-environment.js";
export { MESH_SERVICES, serviceEntry, type MeshServiceName } from "./service-entry.js";
export {
  DEV_DATA_DIR,
  ensureServerBinaries,
  findExecutable,
  provideMeshServers,
  SERVER_URL_VARIABLES,
  type MeshServers,
  type MeshServersOptions,
} from "./infra.js";
