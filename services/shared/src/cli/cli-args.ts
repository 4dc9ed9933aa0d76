import { parseArgs, type ParseArgsConfig } from "node:util";

/** A mistake in the command line: the CLIs print it with their usage and exit with code 2. */
export class UsageError extends Error {}

/** `util.parseArgs` over `config` (strict), its errors turned into {@link UsageError}s. */
export function parseCommandLine<C extends ParseArgsConfig & { strict: true }>(config: C): ReturnType<typeof parseArgs<C>> {
  try {
    return parseArgs(config);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}
