export * from "./cors.js";
export * from "./database-unavailable.js";
export * from "./drain.js";
export * from "./health.js";
export * from "./reflection.js";
export * from "./request-validation.js";
export * from "./serve.js";
export * from "./stream-limits.js";
