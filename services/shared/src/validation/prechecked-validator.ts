import type { DescMessage, MessageShape, MessageValidType } from "@bufbuild/protobuf";
import type { ValidationResult, Validator } from "@bufbuild/protovalidate";
import { compilePrecheck, type Precheck } from "./precheck.js";

/**
 * Wraps `validator` so that each message is first judged by the compiled precheck of its schema
 * ({@link compilePrecheck}, compiled on the schema's first message and cached): a message it
 * vouches for is valid without running the interpreted validator; every other message, and every
 * message of a schema the precheck does not compile, is judged by `validator` itself. So a result
 * other than `valid` (and every violation, error and message) is always `validator`'s own.
 *
 * Use it wherever a validator judges a hot stream of messages: the request validation of every
 * server, ingest's per-scan check. The precheck has protovalidate's default semantics: wrap a
 * validator that knows the mesh's predefined rules and matches patterns with the default RE2
 * engine (`createMeshValidator()`); `failFast` and `legacyRequired` change no verdict the precheck
 * gives.
 */
export function createPrecheckedValidator(validator: Validator): Validator {
  const prechecks = new WeakMap<DescMessage, Precheck<DescMessage> | null>();
  return {
    validate<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): ValidationResult<MessageValidType<Desc>, MessageShape<Desc>> {
      let precheck = prechecks.get(schema);
      if (precheck === undefined) {
        precheck = compilePrecheck<DescMessage>(schema) ?? null;
        prechecks.set(schema, precheck);
      }
      if (precheck?.(message)) return { kind: "valid", message: message as MessageValidType<Desc>, error: undefined, violations: undefined };
      return validator.validate(schema, message);
    },
  };
}
