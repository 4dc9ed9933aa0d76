export * from "./base-config.js";
export * from "./start-service.js";
