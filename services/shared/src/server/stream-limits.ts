import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { principalKey } from "../auth/auth-interceptor.js";
import type { Principal } from "../auth/principal.js";
import { observeStream } from "../telemetry/observe-stream.js";
import { clientAddressKey, connectionKey } from "./serve.js";

/** Caps on the open calls of one long-lived streaming method; 0 means no cap. */
export interface StreamLimit {
  /** The streaming method (e.g. `TrackingService.method.watchShipment`). */
  method: DescMethod;
  /** Calls of this method one connection (HTTP/2 session or HTTP/1.1 socket) may have open. */
  perConnection: number;
  /**
   * Calls of this method one principal may have open on this replica: a token's subject, or for
   * anonymous callers the client address (see `trustedProxyHops` of the server).
   */
  perPrincipal: number;
}

/** The key a principal's streams are counted under. */
export function principalStreamKey(principal: Principal, clientAddress: string): string {
  return principal.anonymous ? `address:${clientAddress}` : `subject:${principal.subject}`;
}

/** Open-call counts by key; a key's entry exists only while it has open calls. */
class Counts<K> {
  private readonly open = new Map<K, number>();

  take(key: K, cap: number): boolean {
    const n = this.open.get(key) ?? 0;
    if (cap > 0 && n >= cap) return false;
    this.open.set(key, n + 1);
    return true;
  }

  give(key: K): void {
    const n = (this.open.get(key) ?? 1) - 1;
    if (n <= 0) this.open.delete(key);
    else this.open.set(key, n);
  }

  get size(): number {
    return this.open.size;
  }
}

/** The interceptor with a view of what it holds (tests check that closed streams leave nothing behind). */
export interface StreamLimitInterceptor extends Interceptor {
  /** Connections and principals with open capped calls right now. */
  held(): { connections: number; principals: number };
}

/**
 * Caps the open calls of long-lived streaming methods per connection and per principal: a call
 * over a cap fails at once with ResourceExhausted, before its handler runs, and every other call
 * is untouched. A slot is given back when the call ends in any way (the response stream finishes,
 * fails, or the client cancels). Runs after authentication (it reads the principal).
 */
export function createStreamLimitInterceptor(limits: readonly StreamLimit[]): StreamLimitInterceptor {
  const byMethod = new Map(
    limits.map((l) => [
      `${l.method.parent.typeName}/${l.method.name}`,
      { limit: l, connections: new Counts<object>(), principals: new Counts<string>() },
    ]),
  );
  const interceptor: Interceptor = (next) => async (req) => {
    const entry = byMethod.get(`${req.service.typeName}/${req.method.name}`);
    if (!entry) return next(req);
    const { limit, connections, principals } = entry;
    const connection = req.contextValues.get(connectionKey);
    const who = principalStreamKey(req.contextValues.get(principalKey), req.contextValues.get(clientAddressKey));
    const name = `${req.method.parent.name}.${req.method.name}`;
    if (!connections.take(connection, limit.perConnection)) {
      throw new ConnectError(`too many open ${name} calls on this connection (at most ${limit.perConnection})`, Code.ResourceExhausted);
    }
    if (!principals.take(who, limit.perPrincipal)) {
      connections.give(connection);
      const whom = who.startsWith("address:") ? "from this address" : "for this caller";
      throw new ConnectError(`too many open ${name} calls ${whom} (at most ${limit.perPrincipal})`, Code.ResourceExhausted);
    }
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      req.signal.removeEventListener("abort", release);
      connections.give(connection);
      principals.give(who);
    };
    req.signal.addEventListener("abort", release, { once: true });
    try {
      const res = await next(req);
      if (!res.stream) {
        release();
        return res;
      }
      // Released when the stream ends in any way, on the stream's one wrapper (see observeStream).
      return { ...res, message: observeStream(res.message, { onEnd: release }) };
    } catch (e) {
      release();
      throw e;
    }
  };
  return Object.assign(interceptor, {
    held: () => {
      let c = 0;
      let p = 0;
      for (const e of byMethod.values()) {
        c += e.connections.size;
        p += e.principals.size;
      }
      return { connections: c, principals: p };
    },
  });
}
