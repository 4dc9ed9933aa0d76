export * from "./base-config.js";
export * from "./start-service.js";
export * from "./postgres-config.js";
