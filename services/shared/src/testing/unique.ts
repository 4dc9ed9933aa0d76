import { randomBytes } from "node:crypto";

let counter = 0;

/**
 * A name that no other test run will use: `<prefix>_<time><counter><random>`, all lowercase
 * `[a-z0-9_]`, e.g. `t_m3x9k2a0f7qz`.
 *
 * The result is safe as a JetStream stream or consumer name (also once uppercased), as a NATS
 * subject token and as an unquoted SQL identifier. The prefix is lowercased and every character
 * outside `[a-z0-9_]` becomes `_`; a prefix that does not start with a letter gets a leading `t`.
 * The total length stays under PostgreSQL's 63-byte identifier limit for prefixes of up to 40
 * characters (longer prefixes are truncated).
 */
export function uniqueName(prefix = "t"): string {
  let p = prefix.toLowerCase().replace(/[^a-z0-9_]/g, "_").slice(0, 40);
  if (!/^[a-z]/.test(p)) p = `t${p}`;
  counter = (counter + 1) % 1296;
  const time = Date.now().toString(36).slice(-6);
  const seq = counter.toString(36).padStart(2, "0");
  const rand = BigInt(`0x${randomBytes(5).toString("hex")}`).toString(36).padStart(8, "0").slice(-6);
  return `${p}_${time}${seq}${rand}`;
}
