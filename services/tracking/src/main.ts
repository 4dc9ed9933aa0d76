import { runMain } from "@logistics/shared/runtime";
import { trackingConfig } from "./config.js";
import { trackingService } from "./tracking.js";

await runMain(trackingService, (env) => trackingConfig.parse(env));
