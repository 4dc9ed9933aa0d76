export { createMeshValidator, meshRuleRegistry } from "./mesh-validator.js";
export { compilePrecheck, type Precheck } from "./precheck.js";
