import { runMain } from "@logistics/shared/runtime";
import { ingestConfig } from "./config.js";
import { ingestService } from "./ingest.js";

await runMain(ingestService, (env) => ingestConfig.parse(env));
