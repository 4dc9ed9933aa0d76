export * from "./env-config.js";
