import { readFileSync } from "node:fs";
import * as net from "node:net";
import type { AddressInfo } from "node:net";

/** The lowest port handed out: above the well-known and most registered servers' ports. */
const LOWEST = 15_000;
/** Ports this process handed out lately, not handed out again (several are picked before any is bound). */
const recent = new Set<number>();
const RECENT_MAX = 4096;

/**
 * The start of the kernel's ephemeral range (`net.ipv4.ip_local_port_range`): the ports it gives
 * outbound connections and `listen(0)`. Linux's default when it cannot be read.
 */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    if (Number.isInteger(low)) return low;
  } catch {
    // not Linux, or no /proc: the default below
  }
  return 32_768;
}

function tryListen(port: number): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once("error", (err: NodeJS.ErrnoException) =>
      err.code === "EADDRINUSE" || err.code === "EACCES" ? resolve(undefined) : reject(err),
    );
    server.listen({ host: "127.0.0.1", port, exclusive: true }, () => {
      const bound = (server.address() as AddressInfo).port;
      server.close((err) => (err ? reject(err) : resolve(bound)));
    });
  });
}

/**
 * A free TCP port on the loopback interface, picked at random *below* the kernel's ephemeral
 * range and checked by binding it.
 *
 * The port is free when this resolves, not reserved. A port from the ephemeral range (what
 * `listen(0)` returns) can be taken before the caller binds it by any outbound connection of any
 * process, or by anyone's `listen(0)`, and a process that starts slowly (a whole mesh) gives that
 * minutes. Below the range only a process that picks its port itself can take it. Launchers that
 * pass the port to a child process still retry with a new port when the child fails to bind.
 *
 * Falls back to the kernel's choice when there is no room below the range.
 */
export async function getFreePort(): Promise<number> {
  const room = ephemeralLow() - LOWEST;
  if (room >= 1000) {
    for (let i = 0; i < 64; i++) {
      const port = LOWEST + Math.floor(Math.random() * room);
      if (recent.has(port)) continue;
      // Held before the check, so concurrent calls of this process never hand out the same port.
      recent.add(port);
      if (recent.size > RECENT_MAX) recent.delete(recent.values().next().value!);
      if ((await tryListen(port)) === undefined) continue;
      return port;
    }
  }
  const port = await tryListen(0);
  if (port === undefined) throw new Error("no free loopback port");
  return port;
}
