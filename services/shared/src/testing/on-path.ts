import { existsSync } from "node:fs";
import { delimiter, join } from "node:path";

/** The full path of executable `name` found through PATH, or undefined (tests skip with a reason then). */
export function findOnPath(name: string): string | undefined {
  return (process.env["PATH"] ?? "")
    .split(delimiter)
    .filter(Boolean)
    .map((d) => join(d, name))
    .find((p) => existsSync(p));
}
