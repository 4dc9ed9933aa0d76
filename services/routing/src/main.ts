import { runMain } from "@logistics/shared/runtime";
import { routingConfig } from "./config.js";
import { routingService } from "./routing.js";

await runMain(routingService, (env) => routingConfig.parse(env));
