import * as net from "node:net";
import type { AddressInfo } from "node:net";

/** A TCP listener that accepts connections and never answers (see {@link startBlackHole}). */
export interface BlackHole {
  readonly port: number;
  /** `postgres://postgres@127.0.0.1:<port>/test`: a PostgreSQL URL that leads into the hole. */
  readonly postgresUrl: string;
  /** Connections accepted so far. */
  accepted(): number;
  /** Destroys every accepted connection and stops listening. Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts a "black hole" on a free loopback port: it accepts every TCP connection, reads and
 * discards what the client sends, and never writes a byte or closes — a server that hangs after
 * the handshake (a network black hole past a load balancer, a PostgreSQL stuck in recovery). A
 * client without its own timeout waits on it forever.
 */
export async function startBlackHole(): Promise<BlackHole> {
  const listener = await listen((socket) => socket.resume());
  return {
    port: listener.port,
    postgresUrl: `postgres://postgres@127.0.0.1:${listener.port}/test`,
    accepted: listener.accepted,
    close: listener.close,
  };
}

/** A TCP proxy that can stop forwarding on a live connection (see {@link startTcpProxy}). */
export interface TcpProxy {
  readonly port: number;
  /** The target URL with the proxy's host and port: the same database, through the proxy. */
  readonly url: string;
  /** Connections accepted so far. */
  accepted(): number;
  /** Connections whose client side is still open (as far as a forwarding proxy has seen). */
  open(): number;
  /**
   * Stops forwarding in both directions on every connection, open or opened later: bytes stay
   * unread in the kernel's buffers, no socket is closed or reset. To both ends the path has gone
   * silent, as when the other host vanished or a firewall drops its packets.
   */
  blackHole(): void;
  /** Forwards again: what was held back is delivered, late, in order. */
  forward(): void;
  /** Destroys every connection and stops listening. Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts a TCP proxy on a free loopback port in front of the server of `targetUrl` (a URL such as
 * a PostgreSQL connection string; port 5432 when it names none). It forwards until
 * {@link TcpProxy.blackHole} turns the path silent on connections already open, which a
 * {@link startBlackHole} cannot do: a pooled connection that worked and then never hears back.
 */
export async function startTcpProxy(targetUrl: string): Promise<TcpProxy> {
  const target = new URL(targetUrl);
  const pairs = new Set<readonly [net.Socket, net.Socket]>();
  let silent = false;
  const listener = await listen((client) => {
    const upstream = net.connect({ host: target.hostname, port: Number(target.port || 5432) });
    const pair = [client, upstream] as const;
    pairs.add(pair);
    upstream.on("error", () => {});
    for (const [from, to] of [pair, [upstream, client] as const]) {
      from.on("data", (chunk: Buffer) => to.write(chunk));
      from.on("end", () => to.end());
      from.on("close", () => {
        to.destroy();
        pairs.delete(pair);
      });
      if (silent) from.pause();
    }
  });
  const url = new URL(targetUrl);
  url.hostname = "127.0.0.1";
  url.port = String(listener.port);
  return {
    port: listener.port,
    url: url.toString(),
    accepted: listener.accepted,
    open: () => pairs.size,
    blackHole() {
      silent = true;
      for (const pair of pairs) for (const s of pair) s.pause();
    },
    forward() {
      silent = false;
      for (const pair of pairs) for (const s of pair) s.resume();
    },
    close: listener.close,
  };
}

/** A loopback listener that hands each accepted socket to `onSocket` and destroys them all on close. */
async function listen(onSocket: (socket: net.Socket) => void): Promise<{ port: number; accepted(): number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
    onSocket(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0 }, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    port,
    accepted: () => accepted,
    close() {
      closing ??= new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      });
      return closing;
    },
  };
}
