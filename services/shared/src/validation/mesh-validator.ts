import { createRegistry, type Registry } from "@bufbuild/protobuf";
import { createValidator, type Validator } from "@bufbuild/protovalidate";
import { file_logistics_common_v1_validation } from "../gen/logistics/common/v1/validation_pb.js";

/**
 * The predefined protovalidate rules of the mesh's contracts (`logistics.common.v1.text`,
 * `logistics.common.v1.mesh_time`), for validators and anything else that reads rule options.
 */
export const meshRuleRegistry: Registry = createRegistry(file_logistics_common_v1_validation);

/**
 * A protovalidate validator that knows the mesh's predefined rules. Every validator of mesh
 * messages must be built here: protovalidate refuses (with a compilation error, so every request
 * would fail validation) to evaluate a message using a predefined rule it was not told about.
 * Compiled rules are cached inside the validator: build one per process and reuse it.
 */
export function createMeshValidator(): Validator {
  return createValidator({ registry: meshRuleRegistry });
}
