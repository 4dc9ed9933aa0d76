import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { isAllowListedAddress, isPermittedAddress, isPublicAddress, parseCidr, parseIp } from "./address-policy.js";

describe("isPublicAddress", () => {
  it("refuses loopback, private, link-local, CGNAT, multicast, unspecified and reserved IPv4", () => {
    for (const a of [
      "127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254",
      "100.64.0.1", "100.127.255.254", "0.0.0.0", "224.0.0.1", "239.255.255.250", "255.255.255.255", "198.18.0.1",
    ]) assert.equal(isPublicAddress(a), false, a);
  });

  it("refuses IPv6 loopback, unspecified, ULA, link-local, multicast and embedded private IPv4", () => {
    for (const a of [
      "::1", "::", "fd00::1", "fc12:3456::1", "fe80::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:7f00:1",
      "::ffff:10.0.0.1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::", "2001:db8::1",
    ]) assert.equal(isPublicAddress(a), false, a);
  });

  it("refuses every IPv6 address outside global unicast (2000::/3) and the documentation prefixes", () => {
    for (const a of [
      "::ffff:0:a9fe:a9fe", // IPv4-translated 169.254.169.254 (a stateless translator would reach it)
      "::ffff:0:a00:1", // IPv4-translated 10.0.0.1
      "::1:2:3:4:5:6", // reserved ::/8
      "5f00::1", // SRv6 SIDs
      "4000::1", // unassigned
      "3fff::1", // documentation (RFC 9637)
      "3fff:fff::1",
    ]) assert.equal(isPublicAddress(a), false, a);
  });

  it("accepts public IPv4 and IPv6 unicast", () => {
    for (const a of ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111", "2a00:1450:4001:81b::200e", "::ffff:8.8.8.8"]) {
      assert.equal(isPublicAddress(a), true, a);
    }
  });

  it("treats garbage as not public", () => {
    for (const a of ["", "localhost", "1.2.3", "1.2.3.256", "::g", "1::2::3"]) assert.equal(isPublicAddress(a), false, a);
  });
});

describe("parseCidr / isPermittedAddress", () => {
  it("parses IPv4 and IPv6 blocks and bare addresses", () => {
    assert.deepEqual(parseCidr("10.0.0.0/8"), { family: 4, network: 0x0a000000n, prefix: 8 });
    assert.equal(parseCidr("::1")?.prefix, 128);
    assert.equal(parseCidr("10.0.0.0/33"), undefined);
    assert.equal(parseCidr("nonsense"), undefined);
    assert.equal(parseIp("1:2:3:4:5:6:7:8")?.family, 6);
  });

  it("permits non-public addresses only inside allow-listed ranges", () => {
    const allow = { hosts: [], cidrs: ["127.0.0.0/8", "fd00::/8"] };
    assert.equal(isPermittedAddress("127.0.0.1", allow), true);
    assert.equal(isPermittedAddress("fd00::5", allow), true);
    assert.equal(isPermittedAddress("10.0.0.1", allow), false);
    assert.equal(isPermittedAddress("8.8.8.8", allow), true);
  });

  it("tells addresses inside allow-listed ranges (public or not) from the rest", () => {
    const allow = { hosts: [], cidrs: ["127.0.0.0/8", "203.0.113.0/24", "8.8.8.8"] };
    for (const a of ["127.0.0.1", "203.0.113.9", "8.8.8.8"]) assert.equal(isAllowListedAddress(a, allow), true, a);
    for (const a of ["8.8.4.4", "10.0.0.1", "::1", "garbage"]) assert.equal(isAllowListedAddress(a, allow), false, a);
  });
});
