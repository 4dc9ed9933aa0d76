import { defaultClientConditions, defineConfig } from "vite";

/**
 * Builds the tracking page into `services/web/dist` (gitignored). Run with the page's folder as the
 * root: `npx vite build services/web` (the local runner does the same through Vite's API).
 * The generated Protobuf code comes from `@logistics/shared/gen/...`, resolved to its TypeScript
 * sources through the package's `source` export condition.
 */
export default defineConfig({
  base: "./",
  // Workspace packages (the generated contracts in @logistics/shared) resolve to their sources.
  resolve: { conditions: ["source", ...defaultClientConditions] },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: true,
    chunkSizeWarningLimit: 1024,
  },
  server: {
    fs: { allow: ["../.."] },
  },
});
