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
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
    socket.resume();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0 }, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    port,
    postgresUrl: `postgres://postgres@127.0.0.1:${port}/test`,
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
