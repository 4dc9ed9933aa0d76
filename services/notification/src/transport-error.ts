/**
 * What a subscriber is told about a webhook attempt that got no HTTP response. Pure.
 *
 * The error of an attempt is stored and returned to the subscriber (ListDeliveries), so it names
 * a class, never the system's text: `connect ECONNREFUSED 203.0.113.7:443`, `wrong version
 * number` or a certificate's names would tell the subscriber which address a name resolved to,
 * and whether a port is closed, filtered or speaks another protocol. The classes are what a
 * subscriber needs to fix its receiver; the full text goes to the operator (logs, spans).
 */

/** How far a request's connection got. */
export type ConnectionPhase =
  /** No TCP connection yet. */
  | "connecting"
  /** TCP connected, TLS handshake under way (https only). */
  | "handshaking"
  /** Ready for the request (or a kept-alive connection that was reused). */
  | "connected";

/** The classes a failed attempt's error is one of (besides `timed out after <n> ms`). */
export const TransportError = Object.freeze({
  /** No connection: refused, unreachable, no answer in time, a host that did not resolve. Closed and filtered ports look alike. */
  connectionFailed: "connection failed",
  /** The TLS handshake failed: an untrusted or mismatched certificate, or no TLS on the other side. */
  tls: "TLS error",
  /** Connected, then closed or reset by the receiver before a response. */
  closed: "connection closed before a response",
  /** Something answered that is not HTTP/1.x. */
  invalidResponse: "invalid HTTP response",
  /** Anything else (e.g. a request Node refused to send). */
  other: "request failed",
});

const TLS_CODE = /^(ERR_TLS_|ERR_SSL_|EPROTO$|UNABLE_TO_|HOSTNAME_MISMATCH$)|CERT/;
const CLOSED_CODES: ReadonlySet<string> = new Set(["ECONNRESET", "EPIPE", "ECONNABORTED", "ETIMEDOUT"]);

/** The class of a transport error with Node's `code` (if any) that ended a request in `phase`. */
export function transportErrorClass(code: string | undefined, phase: ConnectionPhase): string {
  if (code?.startsWith("HPE_")) return TransportError.invalidResponse;
  if (code !== undefined && TLS_CODE.test(code)) return TransportError.tls;
  if (phase === "connecting") return TransportError.connectionFailed;
  if (phase === "handshaking") return TransportError.tls;
  return code !== undefined && CLOSED_CODES.has(code) ? TransportError.closed : TransportError.other;
}

/**
 * The class of an attempt that ran out of time in `phase`: `connection failed` while connecting
 * (a filtered port must look like a closed one), otherwise `timed out after <timeoutMs> ms`.
 */
export function timeoutClass(phase: ConnectionPhase, timeoutMs: number): string {
  return phase === "connecting" ? TransportError.connectionFailed : `timed out after ${timeoutMs} ms`;
}
