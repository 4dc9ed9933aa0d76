import { runMain } from "../../shared/src/runtime/start-service.js";
import { notificationConfig } from "./config.js";
import { notificationService } from "./notification.js";

await runMain(notificationService, (env) => notificationConfig.parse(env));
