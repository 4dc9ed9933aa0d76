import { lookup as dnsLookup } from "node:dns/promises";
import { isIP } from "node:net";
import { isAllowedHost, isAllowListedAddress, isPermittedAddress, stripBrackets, type AddressAllowList } from "./address-policy.js";
import { isPermittedPort, refusedPortMessage } from "./port-policy.js";

/** Why a webhook URL is refused. */
export type WebhookUrlProblem =
  /**
   * Not an absolute http(s) URL, http while only https is allowed, credentials in the URL, a host
   * that does not resolve, or a port that is neither the scheme's default nor allowed.
   */
  | "invalid"
  /** The host is or resolves to a non-public address (server-side request forgery protection). */
  | "forbidden";

/** A webhook URL that may not be used; the service layer maps `problem` to a Connect code. */
export class WebhookUrlError extends Error {
  override readonly name = "WebhookUrlError";
  constructor(
    readonly problem: WebhookUrlProblem,
    /** What the caller is told (it reaches the subscriber: the Subscribe error, an attempt's error). */
    message: string,
    /** What only the operator is told (logs, spans): e.g. the address a host name resolved to. */
    readonly detail: string = message,
  ) {
    super(message);
  }
}

/** Resolves a host name to every address (like `dns.lookup(host, { all: true })`). */
export type HostResolver = (host: string) => Promise<ReadonlyArray<{ address: string; family: number }>>;

/** Where webhooks may go. */
export interface WebhookTargetPolicy {
  /** Accept http:// (local development). Default false: https only. */
  allowHttp: boolean;
  /** Hosts and ranges exempt from the public-address rule, and from the port rule. */
  allow: AddressAllowList;
  /**
   * Ports allowed besides the scheme's default (443 for https, 80 for http). Default none. An
   * allow-listed host, or a host whose every address lies in an allow-listed range, may use any
   * port: the operator vouched for that destination, as local receivers on random ports need.
   */
  allowPorts?: readonly number[];
  /** DNS resolver. Default: `dns.lookup` with `all: true` (the system resolver, as connections use). */
  resolve?: HostResolver;
}

/** The address a request must connect to, checked against the policy. */
export interface ResolvedTarget {
  readonly url: URL;
  /**
   * The checked address to connect to (requests pin it, so a second DNS answer cannot differ
   * from the checked one), or undefined for allow-listed hosts, which resolve normally.
   */
  readonly address: string | undefined;
  readonly family: 4 | 6 | undefined;
}

const defaultResolve: HostResolver = (host) => dnsLookup(host, { all: true, verbatim: true });

/** Parses and checks the form of a webhook URL (scheme, credentials); no DNS. */
export function parseWebhookUrl(raw: string, policy: Pick<WebhookTargetPolicy, "allowHttp">): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new WebhookUrlError("invalid", "webhook_url is not an absolute URL");
  }
  if (url.protocol !== "https:" && !(policy.allowHttp && url.protocol === "http:")) {
    throw new WebhookUrlError(
      "invalid",
      `webhook_url must use https (got ${url.protocol.slice(0, -1)}); ` +
        `for local development the service can accept http with NOTIFICATION_ALLOW_HTTP=true (npm start sets it)`,
    );
  }
  if (url.username || url.password) {
    throw new WebhookUrlError("invalid", "webhook_url must not contain credentials");
  }
  if (!url.hostname) throw new WebhookUrlError("invalid", "webhook_url has no host");
  return url;
}

/**
 * Checks a webhook URL and resolves its host: every address it resolves to must be public (or
 * allow-listed), otherwise {@link WebhookUrlError} "forbidden"; its port must be the scheme's
 * default or allowed (unless the host or all its addresses are allow-listed), otherwise "invalid".
 * Called at Subscribe and again before every attempt, so a host re-pointed at an internal address
 * after subscribing (DNS rebinding), or a port no longer allowed, is refused at delivery time.
 */
export async function resolveWebhookTarget(raw: string | URL, policy: WebhookTargetPolicy): Promise<ResolvedTarget> {
  const url = typeof raw === "string" ? parseWebhookUrl(raw, policy) : raw;
  const host = stripBrackets(url.hostname);
  if (isAllowedHost(host, policy.allow)) return { url, address: undefined, family: undefined };
  const allowPorts = policy.allowPorts ?? [];
  const portPermitted = isPermittedPort(url, allowPorts);
  // Without allow-listed ranges no address can exempt the port: refuse before any DNS lookup.
  if (!portPermitted && policy.allow.cidrs.length === 0) {
    throw new WebhookUrlError("invalid", refusedPortMessage(url, allowPorts));
  }
  const literal = isIP(host);
  let addresses: ReadonlyArray<{ address: string; family: number }>;
  if (literal) addresses = [{ address: host, family: literal }];
  else {
    try {
      addresses = await (policy.resolve ?? defaultResolve)(host);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      throw new WebhookUrlError("invalid", `webhook host ${host} does not resolve (${String(code ?? err)})`);
    }
    if (addresses.length === 0) throw new WebhookUrlError("invalid", `webhook host ${host} does not resolve`);
  }
  const refused = addresses.find((a) => !isPermittedAddress(a.address, policy.allow));
  if (refused) {
    // The address a name resolved to stays out of the caller's message: told it, a subscriber
    // could map the deployment's internal names (Subscribe with https://db.internal/, read
    // the answer). A literal address is the caller's own.
    const hint =
      `; for local development the service can allow it with NOTIFICATION_WEBHOOK_ALLOW_HOSTS or NOTIFICATION_WEBHOOK_ALLOW_CIDRS ` +
      `(npm start allows loopback)`;
    const detail = `webhook host ${host} resolves to ${refused.address}, which is not a public address`;
    throw new WebhookUrlError(
      "forbidden",
      (literal ? detail : `webhook host ${host} resolves to an address that is not public`) + hint,
      detail + hint,
    );
  }
  if (!portPermitted && !addresses.every((a) => isAllowListedAddress(a.address, policy.allow))) {
    throw new WebhookUrlError("invalid", refusedPortMessage(url, allowPorts));
  }
  const first = addresses[0] as { address: string; family: number };
  return { url, address: first.address, family: first.family === 6 ? 6 : 4 };
}
