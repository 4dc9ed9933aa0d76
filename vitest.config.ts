import { fileURLToPath } from "node:url";
import { defaultServerConditions } from "vite";
import { defineConfig } from "vitest/config";
import { SummaryReporter } from "./scripts/vitest/summary-reporter.js";

const root = fileURLToPath(new URL(".", import.meta.url)).replace(/\/$/, "");
const exclude = ["**/node_modules/**", "**/dist/**", "coverage/**"];
/** The browser tests: Chromium (playwright-core) against the whole mesh. */
const browserTests = "{services/*,dev}/test/**/*browser.int.test.ts";

export default defineConfig({
  // Workspace packages resolve to their TypeScript sources (the `source` export condition), so
  // tests never need a build of the packages they import.
  ssr: { resolve: { conditions: ["source", ...defaultServerConditions] } },
  // The same for the global setup files (Vitest loads them in its `__vitest__` environment).
  environments: { __vitest__: { resolve: { conditions: ["source", ...defaultServerConditions] } } },
  test: {
    // Two cores: two test files at a time across all projects.
    maxWorkers: 2,
    reporters: ["default", new SummaryReporter(root)],
    coverage: {
      provider: "v8",
      include: ["services/*/src/**/*.ts", "dev/src/**/*.ts"],
      exclude: [
        "**/*.test.ts",
        "services/shared/src/gen/**",
        "services/shared/src/testing/**",
        "services/web/**",
      ],
      // The per-service table comes from SummaryReporter; the JSON is for other tools.
      reporter: ["json-summary"],
      reportsDirectory: "coverage",
    },
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          include: ["{services/*,dev,perf}/src/**/*.test.ts", "dev/test/**/*.test.ts"],
          exclude: [...exclude, "**/*.int.test.ts"],
          pool: "threads",
          // Unit files share a worker's module cache (imports once per worker instead of once per
          // file: the unit run takes a third of the time). So a unit test must leave no global
          // state behind (stop the telemetry it starts, restore any global it sets).
          isolate: false,
          testTimeout: 20_000,
        },
      },
      {
        extends: true,
        test: {
          name: "integration",
          include: ["{services/*,dev,perf}/test/**/*.int.test.ts"],
          exclude: [...exclude, browserTests],
          // Each file in its own process, as deployed: servers, signal handlers and the global
          // OpenTelemetry providers never leak between files.
          pool: "forks",
          globalSetup: ["scripts/vitest/build-services.ts", "scripts/vitest/mesh-servers.ts"],
          // Real servers on a small shared machine: generous, and the same for every file.
          testTimeout: 180_000,
          hookTimeout: 180_000,
        },
      },
      {
        extends: true,
        test: {
          name: "browser",
          include: [browserTests],
          exclude,
          pool: "forks",
          globalSetup: ["scripts/vitest/mesh-servers.ts"],
          testTimeout: 180_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
