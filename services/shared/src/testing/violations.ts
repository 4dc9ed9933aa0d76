import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import type { ConnectError } from "@connectrpc/connect";

/**
 * The field paths (`origin.city`, `scans[0].event_time`, `attributes["gate"]`) of the
 * `buf.validate.Violations` detail of an InvalidArgument error, in the order listed.
 */
export function violationPaths(err: ConnectError): string[] {
  return err.findDetails(ViolationsSchema).flatMap((v) =>
    v.violations.map((x) =>
      (x.field?.elements ?? [])
        .map((e) => {
          const s = e.subscript;
          const sub = s.case === undefined ? "" : s.case === "stringKey" ? `[${JSON.stringify(s.value)}]` : `[${String(s.value)}]`;
          return `${e.fieldName}${sub}`;
        })
        .join("."),
    ),
  );
}
