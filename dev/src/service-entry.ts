import { createRequire } from "node:module";

/** The services of the mesh, in start order. */
export const MESH_SERVICES = ["ingest", "routing", "tracking", "notification"] as const;

/** A service of the mesh. */
export type MeshServiceName = (typeof MESH_SERVICES)[number];

const require = createRequire(import.meta.url);

/**
 * The built entry script of a service (`@logistics/<name>/main`, i.e. `services/<name>/dist/main.js`),
 * resolved through the package's exports so callers never spell a build path. Needs `npm run build`.
 */
export function serviceEntry(name: MeshServiceName): string {
  return require.resolve(`@logistics/${name}/main`);
}
