import { runMain } from "../../shared/src/runtime/start-service.js";
import { routingConfig } from "./config.js";
import { routingService } from "./routing.js";

await runMain(routingService, (env) => routingConfig.parse(env));
