import type { Validator } from "@bufbuild/protovalidate";
import type { Interceptor } from "@connectrpc/connect";
import { createValidateInterceptor } from "@connectrpc/validate";
import { createPrecheckedValidator } from "../validation/prechecked-validator.js";

/** Options of {@link createRequestValidationInterceptor}. */
export interface RequestValidationOptions {
  /** The validator whose verdicts, violations and errors callers see (the mesh validator). */
  validator: Validator;
}

/**
 * Validates every request message against its protovalidate rules: `@connectrpc/validate`'s
 * interceptor, unchanged in what it answers (an invalid message fails the call with
 * InvalidArgument, the validator's message and a `buf.validate.Violations` detail; a unary request
 * is judged before the handler runs, each message of a client or bidi stream as the handler reads
 * it), with a validator that asks each schema's compiled precheck first
 * ({@link createPrecheckedValidator}). Requests the precheck vouches for (most of them) skip the
 * interpreted CEL and RE2 evaluation; every other request is judged by `validator` as before.
 */
export function createRequestValidationInterceptor(o: RequestValidationOptions): Interceptor {
  return createValidateInterceptor({ validator: createPrecheckedValidator(o.validator) });
}
