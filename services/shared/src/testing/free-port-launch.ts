/** How servers say a port was taken (nats-server, redis-server: "address already in use"; PostgreSQL: "could not bind"). */
const BIND_RACE = /could not bind|address already in use/i;

/**
 * Whether `err` or one of its causes reports a port taken: a server started on fixed ports fails
 * with an abort whose cause carries the server's output.
 */
export function isBindRace(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    if (BIND_RACE.test(e instanceof Error ? e.message : String(e))) return true;
    e = e instanceof Error ? e.cause : undefined;
  }
  return false;
}

/** Options of {@link launchOnFreePorts}. */
export interface LaunchOnFreePortsOptions {
  /** Picks the ports of the next try (free ones, unless the caller fixed them). */
  pick(): Promise<void>;
  /** Starts the server on the picked ports and waits until it is ready; stops it again when that fails. */
  launch(): Promise<void>;
  /** The output of the last try's process, searched for the bind error. */
  output(): string;
  /** The caller chose the ports: a bind error is final. Default false. */
  fixed?: boolean;
  /** Most tries. Default 3. */
  attempts?: number;
}

/**
 * Starts a server on ports picked free just before, trying again with new ones when another
 * process bound a port in between (the server's output reports the bind error). Any other
 * failure, a bind error on ports the caller fixed, or the last try's failure is thrown.
 */
export async function launchOnFreePorts(o: LaunchOnFreePortsOptions): Promise<void> {
  const attempts = o.attempts ?? 3;
  for (let attempt = 1; ; attempt++) {
    await o.pick();
    try {
      await o.launch();
      return;
    } catch (err) {
      if (o.fixed === true || attempt >= attempts || !BIND_RACE.test(o.output())) throw err;
    }
  }
}
