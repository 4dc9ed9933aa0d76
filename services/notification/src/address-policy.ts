/**
 * Which IP addresses a webhook may be sent to. Pure functions: no DNS, no sockets.
 *
 * An address is public unless it falls in one of the special-purpose ranges of the IANA IPv4 and
 * IPv6 registries that must never be reachable from a webhook: unspecified, loopback, private
 * (RFC 1918), carrier-grade NAT (RFC 6598), link-local (including cloud metadata at
 * 169.254.169.254), documentation and benchmarking ranges, multicast, reserved/broadcast, IPv6
 * unique-local (fc00::/7) and link-local (fe80::/10), and IPv6 forms that embed an IPv4 address
 * (IPv4-mapped, NAT64, 6to4), which are judged by — or, for translation prefixes, refused
 * because of — the address they carry.
 */

/** A parsed CIDR block. */
export interface Cidr {
  readonly family: 4 | 6;
  /** Network address as a 32-bit (IPv4) or 128-bit (IPv6) integer. */
  readonly network: bigint;
  readonly prefix: number;
}

/** An address as an integer with its family. */
export interface ParsedAddress {
  readonly family: 4 | 6;
  readonly value: bigint;
}

/** Parses a dotted-quad IPv4 or an IPv6 address (brackets and zone ids are not accepted). */
export function parseIp(text: string): ParsedAddress | undefined {
  const v4 = parseIpv4(text);
  if (v4 !== undefined) return { family: 4, value: v4 };
  const v6 = parseIpv6(text);
  if (v6 !== undefined) return { family: 6, value: v6 };
  return undefined;
}

function parseIpv4(text: string): bigint | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let value = 0n;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    value = (value << 8n) | BigInt(n);
  }
  return value;
}

function parseIpv6(text: string): bigint | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(text) || !text.includes(":")) return undefined;
  let head = text;
  let tail: bigint[] = [];
  // An embedded dotted IPv4 tail counts as two groups.
  const lastColon = text.lastIndexOf(":");
  const maybeV4 = text.slice(lastColon + 1);
  if (maybeV4.includes(".")) {
    const v4 = parseIpv4(maybeV4);
    if (v4 === undefined) return undefined;
    tail = [v4 >> 16n, v4 & 0xffffn];
    head = text.slice(0, lastColon + 1);
    if (!head.endsWith("::")) head = head.slice(0, -1);
  }
  const double = head.indexOf("::");
  if (double !== -1 && head.indexOf("::", double + 1) !== -1) return undefined;
  const groupsOf = (s: string): bigint[] | undefined => {
    if (s === "") return [];
    const out: bigint[] = [];
    for (const g of s.split(":")) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(BigInt(`0x${g}`));
    }
    return out;
  };
  let groups: bigint[];
  if (double === -1) {
    const all = groupsOf(head);
    if (!all) return undefined;
    groups = [...all, ...tail];
    if (groups.length !== 8) return undefined;
  } else {
    const left = groupsOf(head.slice(0, double));
    const right = groupsOf(head.slice(double + 2));
    if (!left || !right) return undefined;
    const missing = 8 - left.length - right.length - tail.length;
    if (missing < 1) return undefined;
    groups = [...left, ...new Array<bigint>(missing).fill(0n), ...right, ...tail];
  }
  return groups.reduce((acc, g) => (acc << 16n) | g, 0n);
}

/** Parses `address/prefix` (IPv4 or IPv6); a bare address is a /32 or /128. */
export function parseCidr(text: string): Cidr | undefined {
  const [addr, prefixText, extra] = text.trim().split("/");
  if (addr === undefined || extra !== undefined) return undefined;
  const ip = parseIp(addr);
  if (!ip) return undefined;
  const bits = ip.family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? bits : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > bits) return undefined;
  return { family: ip.family, network: ip.value & mask(bits, prefix), prefix };
}

function mask(bits: number, prefix: number): bigint {
  const all = (1n << BigInt(bits)) - 1n;
  return prefix === 0 ? 0n : (all >> BigInt(bits - prefix)) << BigInt(bits - prefix);
}

/** True when `ip` lies in `cidr` (families must match). */
export function cidrContains(cidr: Cidr, ip: ParsedAddress): boolean {
  if (cidr.family !== ip.family) return false;
  const bits = cidr.family === 4 ? 32 : 128;
  return (ip.value & mask(bits, cidr.prefix)) === cidr.network;
}

const cidrs = (list: string[]): Cidr[] => list.map((c) => parseCidr(c) as Cidr);

const NON_PUBLIC_V4 = cidrs([
  "0.0.0.0/8", // "this network", unspecified
  "10.0.0.0/8", // private
  "100.64.0.0/10", // carrier-grade NAT
  "127.0.0.0/8", // loopback
  "169.254.0.0/16", // link-local, cloud metadata
  "172.16.0.0/12", // private
  "192.0.0.0/24", // IETF protocol assignments
  "192.0.2.0/24", // documentation
  "192.88.99.0/24", // 6to4 relay anycast
  "192.168.0.0/16", // private
  "198.18.0.0/15", // benchmarking
  "198.51.100.0/24", // documentation
  "203.0.113.0/24", // documentation
  "224.0.0.0/4", // multicast
  "240.0.0.0/4", // reserved, broadcast
]);

const NON_PUBLIC_V6 = cidrs([
  "::/128", // unspecified
  "::1/128", // loopback
  "64:ff9b::/96", // NAT64 (would reach an IPv4 address chosen by the translator)
  "64:ff9b:1::/48", // local-use NAT64
  "100::/64", // discard-only
  "2001::/23", // IETF protocol assignments (Teredo, ORCHID...)
  "2001:db8::/32", // documentation
  "2002::/16", // 6to4 (embeds an IPv4 address)
  "fc00::/7", // unique local
  "fe80::/10", // link-local
  "fec0::/10", // deprecated site-local
  "ff00::/8", // multicast
  "3fff::/20", // documentation (RFC 9637)
]);

/** Global unicast: no other IPv6 address is public (reserved ::/8 with IPv4-translated ::ffff:0:a.b.c.d, SRv6 5f00::/16, ...). */
const GLOBAL_UNICAST_V6 = parseCidr("2000::/3") as Cidr;

const V4_MAPPED = parseCidr("::ffff:0:0/96") as Cidr;
const V4_COMPATIBLE = parseCidr("::/96") as Cidr;

/**
 * True when `address` (a textual IPv4 or IPv6 address, as `dns.lookup` returns it) is a public
 * unicast address. Unparseable input is not public. IPv4-mapped (`::ffff:a.b.c.d`) and the
 * deprecated IPv4-compatible (`::a.b.c.d`) forms are judged by their IPv4 address.
 */
export function isPublicAddress(address: string): boolean {
  const ip = parseIp(address);
  if (!ip) return false;
  if (ip.family === 4) return !NON_PUBLIC_V4.some((c) => cidrContains(c, ip));
  if (cidrContains(V4_MAPPED, ip) || (cidrContains(V4_COMPATIBLE, ip) && ip.value > 1n)) {
    return isPublicAddress(v4Text(ip.value & 0xffffffffn));
  }
  return cidrContains(GLOBAL_UNICAST_V6, ip) && !NON_PUBLIC_V6.some((c) => cidrContains(c, ip));
}

function v4Text(v: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 0xffn)).join(".");
}

/** Exceptions to the public-address rule, for local development and tests. */
export interface AddressAllowList {
  /** Host names or IP literals (compared case-insensitively, without brackets) that are always allowed. */
  readonly hosts: readonly string[];
  /** Ranges whose addresses are allowed although not public. */
  readonly cidrs: readonly string[];
}

/** True when the URL host (lowercase, brackets stripped) is exempt from address checks. */
export function isAllowedHost(host: string, allow: AddressAllowList): boolean {
  const h = stripBrackets(host).toLowerCase();
  return allow.hosts.some((a) => stripBrackets(a).toLowerCase() === h);
}

/** True when `address` is public or inside one of the allow-listed ranges. */
export function isPermittedAddress(address: string, allow: AddressAllowList): boolean {
  return isPublicAddress(address) || isAllowListedAddress(address, allow);
}

/** True when `address` lies in one of the allow-listed ranges (public or not). */
export function isAllowListedAddress(address: string, allow: AddressAllowList): boolean {
  const ip = parseIp(address);
  if (!ip) return false;
  return allow.cidrs.some((text) => {
    const c = parseCidr(text);
    return c !== undefined && cidrContains(c, ip);
  });
}

/** `[::1]` → `::1`; other hosts unchanged. */
export function stripBrackets(host: string): string {
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}
