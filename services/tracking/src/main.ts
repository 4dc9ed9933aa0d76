import { runMain } from "../../shared/src/runtime/start-service.js";
import { trackingConfig } from "./config.js";
import { trackingService } from "./tracking.js";

await runMain(trackingService, (env) => trackingConfig.parse(env));
