import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";

/** A bare Connect router on HTTP/2 cleartext, for tests of interceptors and handlers. */
export interface TestConnectServer {
  readonly baseUrl: string;
  close(): Promise<void>;
}

/**
 * Serves `routes` with `interceptors` on 127.0.0.1 (a free port) over h2c — no health,
 * reflection or drain logic, so a test sees exactly what it registers. `close()` closes the
 * client sessions gracefully and resolves when the port is released.
 */
export async function startTestConnectServer(
  routes: (router: ConnectRouter) => void,
  interceptors: Interceptor[] = [],
): Promise<TestConnectServer> {
  const server = http2.createServer(connectNodeAdapter({ routes, interceptors }));
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sessions) s.close();
      await closed;
    },
  };
}
