import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { resolveWebhookTarget, WebhookUrlError, type WebhookTargetPolicy } from "./webhook-target.js";

const policy = (over: Partial<WebhookTargetPolicy> = {}): WebhookTargetPolicy => ({
  allowHttp: false,
  allow: { hosts: [], cidrs: [] },
  resolve: async (host) => {
    const table: Record<string, string[]> = {
      "hooks.example.com": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
      "rebound.example.com": ["93.184.216.34", "10.0.0.7"],
      "internal.example.com": ["192.168.0.10"],
    };
    const found = table[host];
    if (!found) throw Object.assign(new Error("not found"), { code: "ENOTFOUND" });
    return found.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));
  },
  ...over,
});

const problemOf = async (url: string, p = policy()) => {
  try {
    await resolveWebhookTarget(url, p);
    return "ok";
  } catch (err) {
    assert.ok(err instanceof WebhookUrlError);
    return err.problem;
  }
};

describe("resolveWebhookTarget", () => {
  it("names the setting that allows http or a private address in development", async () => {
    await assert.rejects(resolveWebhookTarget("http://hooks.example.com/x", policy()), /must use https.*NOTIFICATION_ALLOW_HTTP=true/);
    await assert.rejects(
      resolveWebhookTarget("https://internal.example.com/x", policy()),
      /internal\.example\.com resolves to an address that is not public.*NOTIFICATION_WEBHOOK_ALLOW_HOSTS or NOTIFICATION_WEBHOOK_ALLOW_CIDRS/,
    );
  });

  it("tells the caller a resolved name's address only in the operator's detail, and a literal address in both", async () => {
    const named = await resolveWebhookTarget("https://internal.example.com/x", policy()).catch((e: unknown) => e as WebhookUrlError);
    assert.ok(named instanceof WebhookUrlError);
    assert.doesNotMatch(named.message, /192\.168/);
    assert.match(named.detail, /resolves to 192\.168\.0\.10, which is not a public address/);
    await assert.rejects(resolveWebhookTarget("https://10.1.2.3/x", policy()), /10\.1\.2\.3, which is not a public address/);
  });

  it("accepts an https URL whose every address is public, pinning the first", async () => {
    const t = await resolveWebhookTarget("https://hooks.example.com/x", policy());
    assert.equal(t.address, "93.184.216.34");
  });

  it("requires https unless http is allowed", async () => {
    assert.equal(await problemOf("http://hooks.example.com/x"), "invalid");
    assert.equal(await problemOf("http://hooks.example.com/x", policy({ allowHttp: true })), "ok");
    assert.equal(await problemOf("ftp://hooks.example.com/x", policy({ allowHttp: true })), "invalid");
  });

  it("refuses hosts that are or resolve (even partly) to non-public addresses", async () => {
    for (const url of [
      "https://internal.example.com/",
      "https://rebound.example.com/",
      "https://127.0.0.1/",
      "https://[::1]/",
      "https://[::ffff:127.0.0.1]/",
      "https://2130706433/",
      "https://169.254.169.254/latest/meta-data",
      "https://100.64.0.1/",
      "https://[fd00::1]/",
    ]) assert.equal(await problemOf(url), "forbidden", url);
  });

  it("refuses credentials in the URL and hosts that do not resolve", async () => {
    assert.equal(await problemOf("https://user:pw@hooks.example.com/"), "invalid");
    assert.equal(await problemOf("https://nowhere.example.com/"), "invalid");
  });

  it("refuses a port other than the scheme's default, unless allowed, naming the port and the setting", async () => {
    for (const url of [
      "https://hooks.example.com:22/x",
      "https://hooks.example.com:6379/x",
      "https://hooks.example.com:80/x",
      "https://93.184.216.34:8443/x",
      "https://[2606:2800:220:1:248:1893:25c8:1946]:25/x",
    ]) assert.equal(await problemOf(url), "invalid", url);
    await assert.rejects(
      resolveWebhookTarget("https://hooks.example.com:22/x", policy()),
      /^WebhookUrlError: webhook_url may not use port 22: https webhooks go to port 443 \(the default\); .*NOTIFICATION_WEBHOOK_ALLOW_PORTS$/,
    );
    assert.equal(await problemOf("https://hooks.example.com:443/x"), "ok");
    assert.equal(await problemOf("http://hooks.example.com:80/x", policy({ allowHttp: true })), "ok");
    assert.equal(await problemOf("http://hooks.example.com:443/x", policy({ allowHttp: true })), "invalid");
    const withPorts = policy({ allowPorts: [8443] });
    assert.equal(await problemOf("https://hooks.example.com:8443/x", withPorts), "ok");
    assert.equal(await problemOf("https://hooks.example.com/x", withPorts), "ok");
    assert.equal(await problemOf("https://hooks.example.com:8444/x", withPorts), "invalid");
  });

  it("refuses a port before resolving the host when no range is allow-listed", async () => {
    const looked: string[] = [];
    const counting = policy({ resolve: async (host) => (looked.push(host), [{ address: "93.184.216.34", family: 4 }]) });
    assert.equal(await problemOf("https://hooks.example.com:22/x", counting), "invalid");
    assert.deepEqual(looked, []);
    assert.equal(await problemOf("https://hooks.example.com/x", counting), "ok");
    assert.deepEqual(looked, ["hooks.example.com"]);
  });

  it("lets allow-listed hosts, and hosts whose every address is in an allow-listed range, use any port", async () => {
    const hosts = policy({ allow: { hosts: ["internal.example.com", "hooks.example.com"], cidrs: [] } });
    assert.equal(await problemOf("https://internal.example.com:9000/x", hosts), "ok");
    assert.equal(await problemOf("https://hooks.example.com:22/x", hosts), "ok");
    const ranges = policy({ allow: { hosts: [], cidrs: ["192.168.0.0/16", "10.0.0.0/8"] } });
    assert.equal(await problemOf("https://internal.example.com:9000/x", ranges), "ok");
    assert.equal(await problemOf("https://10.1.2.3:6379/x", ranges), "ok");
    // A public address outside the ranges keeps the port rule, alone or beside allow-listed ones.
    assert.equal(await problemOf("https://hooks.example.com:22/x", ranges), "invalid");
    assert.equal(await problemOf("https://rebound.example.com:22/x", ranges), "invalid");
    assert.equal(await problemOf("https://rebound.example.com/x", ranges), "ok");
  });

  it("lets allow-listed hosts and ranges through", async () => {
    assert.equal(await problemOf("https://internal.example.com/", policy({ allow: { hosts: ["internal.example.com"], cidrs: [] } })), "ok");
    assert.equal(await problemOf("https://internal.example.com/", policy({ allow: { hosts: [], cidrs: ["192.168.0.0/16"] } })), "ok");
    assert.equal(await problemOf("https://[::1]/", policy({ allow: { hosts: ["[::1]"], cidrs: [] } })), "ok");
  });
});
