import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import type { Validator } from "@bufbuild/protovalidate";
import { GetShipmentRequestSchema, SearchShipmentsRequestSchema } from "../gen/logistics/tracking/v1/tracking_pb.js";
import { createMeshValidator } from "./mesh-validator.js";
import { createPrecheckedValidator } from "./prechecked-validator.js";

function counting(validator: Validator): Validator & { judged: string[] } {
  const counted = {
    judged: [] as string[],
    validate<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>) {
      counted.judged.push(schema.name);
      return validator.validate(schema, message);
    },
  };
  return counted;
}

describe("createPrecheckedValidator", () => {
  it("answers valid for a message its precheck vouches for, without the validator", () => {
    const inner = counting(createMeshValidator());
    const validator = createPrecheckedValidator(inner);
    const message = create(GetShipmentRequestSchema, { trackingNumber: "ABCD1234" });
    assert.deepEqual(validator.validate(GetShipmentRequestSchema, message), { kind: "valid", message, error: undefined, violations: undefined });
    assert.deepEqual(inner.judged, []);
  });

  it("answers the validator's own result for every other message, and for schemas the precheck declines", () => {
    const mesh = createMeshValidator();
    const inner = counting(mesh);
    const validator = createPrecheckedValidator(inner);
    const invalid = create(GetShipmentRequestSchema, { trackingNumber: "abcd" });
    const got = validator.validate(GetShipmentRequestSchema, invalid);
    assert.equal(got.kind, "invalid");
    assert.deepEqual(got, mesh.validate(GetShipmentRequestSchema, invalid));
    // Its message CEL rule is not compiled: every search is the validator's to judge.
    const search = create(SearchShipmentsRequestSchema, { carrierCode: "acme" });
    assert.equal(validator.validate(SearchShipmentsRequestSchema, search).kind, "valid");
    assert.equal(validator.validate(SearchShipmentsRequestSchema, search).kind, "valid");
    assert.deepEqual(inner.judged, ["GetShipmentRequest", "SearchShipmentsRequest", "SearchShipmentsRequest"]);
  });
});
