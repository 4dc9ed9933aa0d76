import { defineConfig } from "vite";

/**
 * Builds the tracking page into `<repo>/dist/web` (gitignored). Run with the page's folder as the
 * root: `npx vite build services/web` (the local runner does the same through Vite's API).
 * The generated Protobuf code is imported from `services/shared/src/gen` with `.js` specifiers;
 * Vite maps those onto the `.ts` sources.
 */
export default defineConfig({
  base: "./",
  build: {
    outDir: "../../dist/web",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: true,
    chunkSizeWarningLimit: 1024,
  },
  server: {
    fs: { allow: ["../.."] },
  },
});
