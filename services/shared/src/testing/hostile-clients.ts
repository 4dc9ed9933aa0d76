import * as net from "node:net";

/** A raw TCP connection to a port; `closedAt` resolves with the time the server closed it. */
export interface RawConnection {
  readonly socket: net.Socket;
  readonly closedAt: Promise<number>;
}

/** Opens a raw TCP connection that reads (and drops) whatever the server sends, so its close is seen. */
export function rawConnection(port: number, host = "127.0.0.1"): RawConnection {
  const socket = net.connect(port, host);
  socket.on("error", () => {});
  socket.resume();
  const closedAt = new Promise<number>((resolve) => socket.once("close", () => resolve(Date.now())));
  return { socket, closedAt };
}

/** Writes `text` one byte at a time, `everyMs` apart, until done or the connection closes. */
export function dribble(socket: net.Socket, text: string, everyMs: number): void {
  let i = 0;
  const timer = setInterval(() => {
    if (socket.destroyed || i >= text.length) return clearInterval(timer);
    socket.write(text[i++]!);
  }, everyMs);
  socket.once("close", () => clearInterval(timer));
}

/**
 * The slow clients of a slowloris attack on a shared gRPC/Connect port, `count` of them in three
 * kinds: sending nothing, half an HTTP/2 preface, and HTTP/1.1 request headers a byte every
 * `everyMs` (default 200 ms) towards `path`.
 */
export function slowClients(port: number, count: number, path: string, everyMs = 200): RawConnection[] {
  return Array.from({ length: count }, (_, i) => {
    const c = rawConnection(port);
    if (i % 3 === 1) c.socket.write("PRI * HTTP/2.0\r\n\r\n");
    if (i % 3 === 2) dribble(c.socket, `POST ${path} HTTP/1.1\r\nHost: x\r\nX-Slow: ${"a".repeat(200)}`, everyMs);
    return c;
  });
}

/** Resolves with the time the last of `conns` was closed, or rejects after `timeoutMs` naming how many are still open. */
export async function lastClosed(conns: readonly RawConnection[], timeoutMs: number): Promise<number> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const closed = await Promise.race([
      Promise.all(conns.map((c) => c.closedAt)),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${conns.filter((c) => !c.socket.destroyed).length} slow connections still open`)), timeoutMs);
      }),
    ]);
    return Math.max(...closed);
  } finally {
    clearTimeout(timer);
  }
}

/** A JSON request with a `depth`-level deep array in a field the message does not have. */
export function deepUnknownField(depth: number, fields = '"trackingNumber":"T1"'): string {
  return `{${fields},"nested":${"[".repeat(depth)}${"]".repeat(depth)}}`;
}
