import { runMain } from "../../shared/src/runtime/start-service.js";
import { ingestConfig } from "./config.js";
import { ingestService } from "./ingest.js";

await runMain(ingestService, (env) => ingestConfig.parse(env));
