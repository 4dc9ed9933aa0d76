/**
 * Per-endpoint circuit breakers for webhook delivery. Pure (time comes from `now`).
 *
 * Closed: requests flow; consecutive failures are counted and reset by a success. After
 * `failureThreshold` consecutive failures the circuit opens: requests are refused without being
 * sent until `cooldownMs` has passed; then it is half-open and lets exactly one probe through.
 * A successful probe closes it, a failed one opens it for another cool-down.
 *
 * State is per replica: each replica learns an endpoint's health from its own attempts, which is
 * enough to stop it from spending its worker slots on a dead endpoint.
 */

/** Options of {@link createCircuitBreakers}. */
export interface CircuitBreakerOptions {
  failureThreshold: number;
  cooldownMs: number;
  /** Clock in ms. Default Date.now. */
  now?: () => number;
}

/** The decision for one request. */
export type CircuitPermit = "closed" | "probe" | "open";

/** Circuit breakers keyed by endpoint. */
export interface CircuitBreakers {
  /**
   * Asks to send a request to `key`: "closed" (send), "probe" (send; the single half-open trial)
   * or "open" (do not send). Every "closed"/"probe" permit must be followed by
   * {@link CircuitBreakers.record}.
   */
  acquire(key: string): CircuitPermit;
  /** Records the result of a permitted request. */
  record(key: string, ok: boolean): void;
  /** The current state of `key`, for metrics and tests. */
  state(key: string): "closed" | "open" | "half-open";
  /** Endpoints whose circuit is not closed, longest open first (for metrics). */
  notClosed(): Array<{ key: string; state: "open" | "half-open"; openedAt: number }>;
}

interface Circuit {
  failures: number;
  openedAt: number | undefined;
  probing: boolean;
}

/** Creates an empty set of breakers (all closed). Idle closed circuits are forgotten. */
export function createCircuitBreakers(opts: CircuitBreakerOptions): CircuitBreakers {
  const now = opts.now ?? Date.now;
  const circuits = new Map<string, Circuit>();
  const get = (key: string): Circuit => {
    let c = circuits.get(key);
    if (!c) {
      c = { failures: 0, openedAt: undefined, probing: false };
      circuits.set(key, c);
    }
    return c;
  };
  const stateOf = (c: Circuit | undefined): "closed" | "open" | "half-open" => {
    if (!c || c.openedAt === undefined) return "closed";
    return now() - c.openedAt >= opts.cooldownMs ? "half-open" : "open";
  };
  return {
    acquire(key) {
      const c = circuits.get(key);
      const s = stateOf(c);
      if (s === "closed") return "closed";
      if (s === "open" || c?.probing) return "open";
      (c as Circuit).probing = true;
      return "probe";
    },
    record(key, ok) {
      const c = get(key);
      c.probing = false;
      if (ok) {
        circuits.delete(key);
        return;
      }
      c.failures++;
      if (c.openedAt !== undefined || c.failures >= opts.failureThreshold) c.openedAt = now();
    },
    state: (key) => stateOf(circuits.get(key)),
    notClosed() {
      const out: Array<{ key: string; state: "open" | "half-open"; openedAt: number }> = [];
      for (const [key, c] of circuits) {
        const state = stateOf(c);
        if (state !== "closed") out.push({ key, state, openedAt: c.openedAt as number });
      }
      return out.sort((a, b) => a.openedAt - b.openedAt);
    },
  };
}
