/**
 * Which ports a webhook may be sent to. Pure functions: no DNS, no sockets.
 *
 * A webhook goes to its scheme's default port (443 for https, 80 for http where http is allowed
 * at all) or to a port the operator lists. Without this rule a subscriber could point webhooks at
 * any port of any public host and read each attempt's outcome back from ListDeliveries: a port
 * scan run from the service's network address, which firewalls may trust more than the
 * subscriber's own.
 */

/** Default ports of the schemes webhooks may use. */
export const DEFAULT_PORTS: Readonly<Record<string, number>> = Object.freeze({ "https:": 443, "http:": 80 });

/** The port a URL connects to: the explicit one, or its scheme's default; undefined for other schemes. */
export function portOf(url: URL): number | undefined {
  if (url.port !== "") return Number(url.port);
  return DEFAULT_PORTS[url.protocol];
}

/** True when `url` goes to its scheme's default port or to one of `allowPorts`. */
export function isPermittedPort(url: URL, allowPorts: readonly number[]): boolean {
  const port = portOf(url);
  return port !== undefined && (port === DEFAULT_PORTS[url.protocol] || allowPorts.includes(port));
}

/**
 * What a subscriber is told when `url`'s port is refused: the port, the ports it may use instead
 * and the setting that allows more, e.g. "webhook_url may not use port 22: https webhooks go to
 * port 443 (the default) or 8443; the service can allow more ports with
 * NOTIFICATION_WEBHOOK_ALLOW_PORTS".
 */
export function refusedPortMessage(url: URL, allowPorts: readonly number[]): string {
  const scheme = url.protocol.slice(0, -1);
  const standard = DEFAULT_PORTS[url.protocol];
  const others = allowPorts.filter((p) => p !== standard);
  const allowed = [`${String(standard)} (the default)`, ...others.map(String)];
  const list = allowed.length === 1 ? allowed[0] : `${allowed.slice(0, -1).join(", ")} or ${String(allowed.at(-1))}`;
  return (
    `webhook_url may not use port ${url.port}: ${scheme} webhooks go to port ${String(list)}; ` +
    `the service can allow more ports with NOTIFICATION_WEBHOOK_ALLOW_PORTS`
  );
}

/**
 * Parses a comma-separated list of TCP ports (`8443, 9443`), each a decimal integer from 1 to
 * 65535; blanks between commas are ignored, duplicates kept once, the result sorted. Throws an
 * Error naming every entry that is not a port.
 */
export function parsePortList(raw: string): readonly number[] {
  const ports = new Set<number>();
  const bad: string[] = [];
  for (const entry of raw.split(",").map((s) => s.trim()).filter(Boolean)) {
    const n = /^\d{1,5}$/.test(entry) ? Number(entry) : NaN;
    if (n >= 1 && n <= 65535) ports.add(n);
    else bad.push(JSON.stringify(entry));
  }
  if (bad.length) {
    throw new Error(`${bad.join(", ")} ${bad.length === 1 ? "is not a port" : "are not ports"} (integers from 1 to 65535)`);
  }
  return Object.freeze([...ports].sort((a, b) => a - b));
}
