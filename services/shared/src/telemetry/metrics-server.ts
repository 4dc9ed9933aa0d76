import * as http from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";

/** Options of {@link startMetricsServer}. */
export interface MetricsServerOptions {
  /** What to serve. */
  registry: Registry;
  /** Listen port; 0 picks a free one (read it back from the handle). */
  port: number;
  /** Listen address. Default "0.0.0.0". */
  host?: string;
}

/** A running metrics endpoint. */
export interface MetricsServerHandle {
  /** The bound port. */
  readonly port: number;
  /** The scrape URL for clients on this machine: `http://127.0.0.1:<port>/metrics` for a wildcard host. */
  readonly url: string;
  /** Stops listening and closes open (keep-alive) connections. Idempotent. */
  close(): Promise<void>;
}

/**
 * Serves `registry` for Prometheus on a plain HTTP port of its own (kept off the RPC port so
 * scrapes bypass authentication and are never routed to clients):
 * - `GET /metrics` (and `HEAD`, any query string) → 200 with the text exposition format and the
 *   registry's content type; 500 if collecting fails;
 * - other methods on `/metrics` → 405; any other path → 404.
 *
 * Resolves once the port is bound; rejects if it cannot be (e.g. `EADDRINUSE`).
 */
export async function startMetricsServer(opts: MetricsServerOptions): Promise<MetricsServerHandle> {
  const { registry } = opts;
  const host = opts.host ?? "0.0.0.0";
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0];
    if (path !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found\n");
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" }).end("method not allowed\n");
      return;
    }
    registry.metrics().then(
      (body) => {
        res.writeHead(200, { "content-type": registry.contentType });
        res.end(req.method === "HEAD" ? undefined : body);
      },
      (err: unknown) => {
        const detail = err instanceof Error ? err.message : String(err);
        res.writeHead(500, { "content-type": "text/plain; charset=utf-8" }).end(`cannot collect metrics: ${detail}\n`);
      },
    );
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });

  const { port } = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;
  return {
    port,
    url: `http://${clientHost(host)}:${port}/metrics`,
    close() {
      closed ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
      return closed;
    },
  };
}

/** A host a local client can connect to for a listen address (wildcards → loopback). */
function clientHost(host: string): string {
  if (host === "0.0.0.0" || host === "") return "127.0.0.1";
  if (host === "::") return "[::1]";
  return host.includes(":") ? `[${host}]` : host;
}
