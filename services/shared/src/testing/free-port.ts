import * as net from "node:net";
import type { AddressInfo } from "node:net";

/**
 * Asks the kernel for a free TCP port on the loopback interface: listens on `127.0.0.1:0`,
 * reads the assigned port and closes the listener.
 *
 * The port is free when this resolves, not reserved: another process may take it before the
 * caller binds it. Launchers that pass the port to a child process therefore retry with a new
 * port when the child fails to bind.
 */
export function getFreePort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => {
      const { port } = server.address() as AddressInfo;
      server.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}
