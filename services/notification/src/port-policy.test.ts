import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { ConfigError } from "@logistics/shared/config";
import { notificationConfig } from "./config.js";
import { isPermittedPort, parsePortList, portOf, refusedPortMessage } from "./port-policy.js";

describe("portOf / isPermittedPort", () => {
  it("takes the explicit port, else the scheme's default", () => {
    assert.equal(portOf(new URL("https://hooks.example.com/x")), 443);
    assert.equal(portOf(new URL("https://hooks.example.com:443/x")), 443);
    assert.equal(portOf(new URL("http://hooks.example.com/x")), 80);
    assert.equal(portOf(new URL("https://hooks.example.com:8443/x")), 8443);
    assert.equal(portOf(new URL("https://[2606:4700::1]:22/x")), 22);
    assert.equal(portOf(new URL("ftp://hooks.example.com/x")), undefined);
  });

  it("permits only the scheme's default port when no other is allowed", () => {
    assert.equal(isPermittedPort(new URL("https://hooks.example.com/"), []), true);
    assert.equal(isPermittedPort(new URL("http://hooks.example.com:80/"), []), true);
    for (const url of [
      "https://hooks.example.com:22/",
      "https://hooks.example.com:6379/",
      "https://hooks.example.com:80/", // http's port is not https's
      "http://hooks.example.com:443/",
      "https://hooks.example.com:0/",
      "https://hooks.example.com:65535/",
      "ftp://hooks.example.com/",
    ]) assert.equal(isPermittedPort(new URL(url), []), false, url);
  });

  it("permits the allowed ports for both schemes, and nothing else", () => {
    const allow = [8080, 8443];
    assert.equal(isPermittedPort(new URL("https://hooks.example.com:8443/"), allow), true);
    assert.equal(isPermittedPort(new URL("http://hooks.example.com:8080/"), allow), true);
    assert.equal(isPermittedPort(new URL("https://hooks.example.com/"), allow), true, "the default stays allowed");
    assert.equal(isPermittedPort(new URL("https://hooks.example.com:8444/"), allow), false);
  });
});

describe("refusedPortMessage", () => {
  it("names the refused port, the ports the scheme may use and the setting", () => {
    assert.equal(
      refusedPortMessage(new URL("https://hooks.example.com:22/"), []),
      "webhook_url may not use port 22: https webhooks go to port 443 (the default); " +
        "the service can allow more ports with NOTIFICATION_WEBHOOK_ALLOW_PORTS",
    );
    assert.match(refusedPortMessage(new URL("https://hooks.example.com:22/"), [8443]), /go to port 443 \(the default\) or 8443;/);
    assert.match(refusedPortMessage(new URL("http://hooks.example.com:22/"), [443, 8080, 8443]), /http webhooks go to port 80 \(the default\), 443, 8080 or 8443;/);
  });
});

describe("parsePortList", () => {
  it("parses, deduplicates and sorts ports, ignoring blanks", () => {
    assert.deepEqual(parsePortList("8443"), [8443]);
    assert.deepEqual(parsePortList(" 9443, 8443 ,,8443, 1,65535 "), [1, 8443, 9443, 65535]);
    assert.deepEqual(parsePortList(","), []);
  });

  it("names every entry that is not a port from 1 to 65535", () => {
    assert.throws(() => parsePortList("8443,0"), /^Error: "0" is not a port \(integers from 1 to 65535\)$/);
    assert.throws(
      () => parsePortList("22x, 65536, -1, 8443, 1e3, +80, 80-90"),
      /^Error: "22x", "65536", "-1", "1e3", "\+80", "80-90" are not ports \(integers from 1 to 65535\)$/,
    );
  });
});

describe("notification config: NOTIFICATION_WEBHOOK_ALLOW_PORTS", () => {
  const base = { JWT_PUBLIC_KEY_FILE: "keys.json" };

  it("defaults to no port besides the schemes' defaults", () => {
    assert.deepEqual(notificationConfig.parse(base).NOTIFICATION_WEBHOOK_ALLOW_PORTS, []);
    assert.deepEqual(notificationConfig.parse({ ...base, NOTIFICATION_WEBHOOK_ALLOW_PORTS: "" }).NOTIFICATION_WEBHOOK_ALLOW_PORTS, []);
    assert.deepEqual(
      notificationConfig.parse({ ...base, NOTIFICATION_WEBHOOK_ALLOW_PORTS: "9443,8443" }).NOTIFICATION_WEBHOOK_ALLOW_PORTS,
      [8443, 9443],
    );
  });

  it("refuses a bad list at start, naming the variable and each bad entry", () => {
    assert.throws(
      () => notificationConfig.parse({ ...base, NOTIFICATION_WEBHOOK_ALLOW_PORTS: "8443,ssh,70000" }),
      (e: unknown) =>
        e instanceof ConfigError &&
        JSON.stringify(e.problems) ===
          JSON.stringify(['NOTIFICATION_WEBHOOK_ALLOW_PORTS="8443,ssh,70000": "ssh", "70000" are not ports (integers from 1 to 65535)']),
    );
  });
});
