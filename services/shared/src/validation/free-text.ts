import { getExtension, hasExtension } from "@bufbuild/protobuf";
import type { StringRules } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { text } from "../gen/logistics/common/v1/validation_pb.js";

/**
 * The contracts' free-text rule as a standard `string.pattern` (RE2): no NUL and no unpaired
 * UTF-16 surrogate. The same pattern as the expression of the predefined rule
 * `logistics.common.v1.text`, which protovalidate evaluates in CEL (and with it every other rule
 * of the field); the standard rule is evaluated natively. Free-text fields carry this pattern;
 * `text` remains only where a field has a pattern of its own.
 */
export const FREE_TEXT_PATTERN = String.raw`^[^\x00\x{D800}-\x{DFFF}]*$`;

/** Whether string rules make a field free text: the free-text pattern, or the predefined `text` rule. */
export function isFreeText(rules: StringRules): boolean {
  return rules.pattern === FREE_TEXT_PATTERN || (hasExtension(rules, text) && getExtension(rules, text));
}
