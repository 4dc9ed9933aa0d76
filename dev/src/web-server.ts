import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { readFile, stat } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { extname, join, normalize, resolve, sep } from "node:path";

/** A hub as the tracking page reads it from `/hubs.json`. */
export interface WebHub {
  readonly code: string;
  readonly name: string;
  readonly city: string;
  readonly countryCode: string;
  readonly latitude: number;
  readonly longitude: number;
  /** IANA time zone. */
  readonly timeZone: string;
}

/** Options for {@link startWebServer}. */
export interface WebServerOptions {
  /** Folder with the built page (`index.html` and `assets/`). */
  readonly root: string;
  /** Listen address. Default "127.0.0.1". */
  readonly host?: string;
  /** Listen port; 0 picks a free one. Default 8080. */
  readonly port?: number;
  /** Base URL of the tracking service the page calls (published in `/config.json`). */
  readonly trackingUrl: string;
  /** Hubs published at `/hubs.json` (positions and time zones for the map and the timeline). Default none. */
  readonly hubs?: readonly WebHub[];
}

/** A running web server. */
export interface WebServerHandle {
  /** Base URL, e.g. "http://127.0.0.1:8080". */
  readonly url: string;
  readonly port: number;
  /** Stops listening and closes open connections. Idempotent. */
  close(): Promise<void>;
}

const TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
};

/**
 * Serves the built tracking page with a small node:http server: static files from `root`
 * (GET/HEAD only, no directory listings, nothing outside `root`), `/config.json` telling the
 * page where tracking is, and `/hubs.json`. Unknown paths without a file extension get
 * `index.html`, so `/?t=...` and deep links work. Hashed assets are cached for a year,
 * `index.html` and the JSON documents not at all.
 */
export async function startWebServer(o: WebServerOptions): Promise<WebServerHandle> {
  const root = resolve(o.root);
  const configJson = JSON.stringify({ trackingUrl: o.trackingUrl, hubsUrl: "hubs.json" });
  const hubsJson = JSON.stringify(o.hubs ?? []);

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://localhost").pathname);
    if (path === "/config.json") return send(res, req, 200, TYPES[".json"]!, configJson, "no-store");
    if (path === "/hubs.json") return send(res, req, 200, TYPES[".json"]!, hubsJson, "max-age=300");
    const rel = normalize(path).replace(/^([/\\])+/, "");
    let file = join(root, rel || "index.html");
    if (file !== root && !file.startsWith(root + sep)) return send(res, req, 404, TYPES[".txt"]!, "not found", "no-store");
    let info = await stat(file).catch(() => undefined);
    if (info?.isDirectory()) {
      file = join(file, "index.html");
      info = await stat(file).catch(() => undefined);
    }
    if (!info?.isFile()) {
      if (extname(rel) !== "") return send(res, req, 404, TYPES[".txt"]!, "not found", "no-store");
      file = join(root, "index.html");
    }
    const body = await readFile(file).catch(() => undefined);
    if (!body) return send(res, req, 404, TYPES[".txt"]!, "page not built", "no-store");
    const type = TYPES[extname(file)] ?? "application/octet-stream";
    const cache = file.includes(`${sep}assets${sep}`) ? "public, max-age=31536000, immutable" : "no-cache";
    send(res, req, 200, type, body, cache);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((ok, fail) => {
    server.once("error", fail);
    server.listen(o.port ?? 8080, o.host ?? "127.0.0.1", () => {
      server.off("error", fail);
      ok();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = o.host ?? "127.0.0.1";
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}`,
    port,
    close: () =>
      (closing ??= new Promise<void>((ok) => {
        server.close(() => ok());
        server.closeAllConnections();
      })),
  };
}

function send(
  res: ServerResponse,
  req: IncomingMessage,
  status: number,
  type: string,
  body: string | Buffer,
  cache: string,
): void {
  res.writeHead(status, {
    "content-type": type,
    "content-length": Buffer.byteLength(body),
    "cache-control": cache,
    "x-content-type-options": "nosniff",
  });
  res.end(req.method === "HEAD" ? undefined : body);
}
