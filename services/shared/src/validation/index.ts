export { createMeshValidator, meshRuleRegistry } from "./mesh-validator.js";
