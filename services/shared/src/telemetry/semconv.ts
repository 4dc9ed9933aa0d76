import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_RPC_METHOD,
  ATTR_RPC_STATUS_CODE,
  ATTR_RPC_SYSTEM_NAME,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_URL_FULL,
  RPC_SYSTEM_NAME_VALUE_GRPC,
} from "@opentelemetry/semantic-conventions";

/**
 * Attribute keys of the semantic conventions the mesh's spans follow, pinned to the version of
 * `@opentelemetry/semantic-conventions` in package.json (1.45.0):
 * - RPC, HTTP, `server.*`, `url.*` and `error.type` are stable there and come from the package's
 *   stable entry point;
 * - messaging is still incubating there; its keys are copied (as the OpenTelemetry docs advise for
 *   incubating attributes) from the 1.45.0 registry, including `messaging.system.name`, which
 *   replaced `messaging.system`.
 */
export const SemConv = Object.freeze({
  RPC_SYSTEM_NAME: ATTR_RPC_SYSTEM_NAME,
  /** Fully qualified: `logistics.ingest.v1.IngestService/StreamScans`. */
  RPC_METHOD: ATTR_RPC_METHOD,
  /** gRPC: the status name (`OK`, `NOT_FOUND`); Connect: the error code (`not_found`), `ok` on success. */
  RPC_STATUS_CODE: ATTR_RPC_STATUS_CODE,
  SERVER_ADDRESS: ATTR_SERVER_ADDRESS,
  SERVER_PORT: ATTR_SERVER_PORT,
  ERROR_TYPE: ATTR_ERROR_TYPE,
  URL_FULL: ATTR_URL_FULL,
  HTTP_REQUEST_METHOD: ATTR_HTTP_REQUEST_METHOD,
  HTTP_RESPONSE_STATUS_CODE: ATTR_HTTP_RESPONSE_STATUS_CODE,
  MESSAGING_SYSTEM_NAME: "messaging.system.name",
});

/** `rpc.system.name` values: gRPC (and gRPC-Web) calls, and Connect protocol calls. */
export const RpcSystemName = Object.freeze({ GRPC: RPC_SYSTEM_NAME_VALUE_GRPC, CONNECTRPC: "connectrpc" });

/**
 * The attribute names of the conventions the mesh emitted before it followed the stable ones
 * (semantic-conventions before 1.38). Emitted in addition only when asked for with
 * `OTEL_SEMCONV_STABILITY_OPT_IN` (see {@link setSemconvStabilityOptIn}).
 */
export const LegacySemConv = Object.freeze({
  RPC_SYSTEM: "rpc.system",
  RPC_SERVICE: "rpc.service",
  RPC_GRPC_STATUS_CODE: "rpc.grpc.status_code",
  RPC_CONNECT_RPC_ERROR_CODE: "rpc.connect_rpc.error_code",
  MESSAGING_SYSTEM: "messaging.system",
});

/** Legacy `rpc.system` values. */
export const LegacyRpcSystem = Object.freeze({ GRPC: "grpc", CONNECT_RPC: "connect_rpc" });

/** The convention categories whose old attribute names can be asked for. */
export type SemconvCategory = "rpc" | "messaging";

const duplicated = new Set<SemconvCategory>();

/**
 * Applies an `OTEL_SEMCONV_STABILITY_OPT_IN` value (comma-separated, as OpenTelemetry's
 * instrumentations read it). The mesh emits the stable names by default; `rpc/dup` and
 * `messaging/dup` add the old names of that category as well, for dashboards and alerts still
 * querying them during a migration. Other entries (`rpc`, `http`, `database`...) change nothing:
 * stable-only is already the default. Undefined or empty resets to stable only.
 */
export function setSemconvStabilityOptIn(value: string | undefined): void {
  duplicated.clear();
  for (const entry of (value ?? "").split(",")) {
    const v = entry.trim().toLowerCase();
    if (v === "rpc/dup") duplicated.add("rpc");
    if (v === "messaging/dup") duplicated.add("messaging");
  }
}

/** True when the old attribute names of `category` are emitted too. */
export function emitsLegacy(category: SemconvCategory): boolean {
  return duplicated.has(category);
}

/**
 * `server.address` and `server.port` of a URL: the host without brackets, and the port (the
 * scheme's default when the URL names none). Empty when the URL does not parse.
 */
export function serverAttributes(url: string | URL): Record<string, string | number> {
  let u: URL;
  try {
    u = typeof url === "string" ? new URL(url) : url;
  } catch {
    return {};
  }
  const host = u.hostname.replace(/^\[(.*)\]$/, "$1");
  if (host === "") return {};
  const port = u.port !== "" ? Number(u.port) : u.protocol === "https:" ? 443 : u.protocol === "http:" ? 80 : undefined;
  return port === undefined ? { [SemConv.SERVER_ADDRESS]: host } : { [SemConv.SERVER_ADDRESS]: host, [SemConv.SERVER_PORT]: port };
}

/**
 * A URL as `url.full` may record it: user name and password are replaced by `REDACTED`, and so is
 * the value of every query parameter (webhook URLs commonly carry their access token in the
 * query; the parameter names stay, so the URL's shape is still visible). The fragment is dropped.
 */
export function redactedUrl(url: string | URL): string | undefined {
  let u: URL;
  try {
    u = new URL(typeof url === "string" ? url : url.href);
  } catch {
    return undefined;
  }
  if (u.username !== "") u.username = "REDACTED";
  if (u.password !== "") u.password = "REDACTED";
  if (u.search !== "") {
    const names = [...u.searchParams.keys()];
    u.search = names.map((n) => `${encodeURIComponent(n)}=REDACTED`).join("&");
  }
  u.hash = "";
  return u.href;
}
