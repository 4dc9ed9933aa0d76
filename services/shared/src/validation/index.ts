export { FREE_TEXT_PATTERN, isFreeText } from "./free-text.js";
export { createMeshValidator, meshRuleRegistry } from "./mesh-validator.js";
export { compilePrecheck, type Precheck } from "./precheck.js";
export { createPrecheckedValidator } from "./prechecked-validator.js";
