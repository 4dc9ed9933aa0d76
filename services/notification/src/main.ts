import { runMain } from "@logistics/shared/runtime";
import { notificationConfig } from "./config.js";
import { notificationService } from "./notification.js";

await runMain(notificationService, (env) => notificationConfig.parse(env));
